package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.List;
import org.junit.jupiter.api.Test;

class LocalWorkerProcessesTest {
    @Test
    void workersInheritThisJvmsEpserveTuningUnlessTheFlagsSetIt() {
        System.setProperty("epserve.test.inherited", "7");
        System.setProperty("epserve.test.overridden", "1");
        try {
            List<String> inherited = LocalWorkerProcesses.inheritedProperties(List.of("-Depserve.test.overridden=2", "-Xmx1g"));
            assertThat(inherited).contains("-Depserve.test.inherited=7");
            assertThat(inherited).noneMatch(f -> f.startsWith("-Depserve.test.overridden"));
            assertThat(inherited).allMatch(f -> f.startsWith("-Depserve."));

            List<String> cmd = LocalWorkerProcesses.sameJvm("io.example.Main", List.of("-Depserve.test.overridden=2"), List.of("worker"))
                    .command(0, new HostPort("127.0.0.1", 7070));
            assertThat(cmd).contains("-Depserve.test.inherited=7", "-Depserve.test.overridden=2");
            assertThat(cmd.indexOf("-Depserve.test.inherited=7")).isLessThan(cmd.indexOf("io.example.Main"));
            assertThat(cmd).doesNotContain("-Depserve.test.overridden=1");
        } finally {
            System.clearProperty("epserve.test.inherited");
            System.clearProperty("epserve.test.overridden");
        }
    }
}
