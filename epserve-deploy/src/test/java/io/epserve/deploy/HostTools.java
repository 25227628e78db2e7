package io.epserve.deploy;

import static org.junit.jupiter.api.Assertions.fail;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import org.junit.jupiter.api.Assumptions;

/** Host programs the monitoring tests run: found on PATH; missing, a test is skipped, except in CI, where it fails. */
final class HostTools {
    private HostTools() {}

    /** The path of {@code program} on PATH, if any. */
    static Optional<Path> onPath(String program) {
        for (String dir : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
            Path p = Path.of(dir, program);
            if (Files.isExecutable(p)) {
                return Optional.of(p);
            }
        }
        return Optional.empty();
    }

    /** The path of {@code program} from Debian's {@code prometheus} package (prometheus, promtool). */
    static Path prometheus(String program) {
        Optional<Path> found = onPath(program);
        if (found.isPresent()) {
            return found.get();
        }
        String why = program + " is not installed (Debian package 'prometheus'; .ci/run installs it)";
        if ("true".equalsIgnoreCase(System.getenv("CI"))) {
            fail(why + ", and CI=true: this test must run in CI");
        }
        Assumptions.abort(why);
        throw new AssertionError("unreachable");
    }
}
