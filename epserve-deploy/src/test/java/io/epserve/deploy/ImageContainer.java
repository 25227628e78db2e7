package io.epserve.deploy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Runs a command of an unpacked image the way a container runtime would, with util-linux's
 * {@code unshare}: new mount and PID namespaces, the image's root file system as {@code /} (with
 * {@code /proc} and the host's {@code /dev}), its working directory, its user and exactly its
 * environment; the network is the host's, so a server inside is reachable on 127.0.0.1. As root
 * the command runs as the image's user; otherwise in a user namespace as its mapped root.
 */
final class ImageContainer {
    private final OciImage image;
    private final String unshare;
    private final String mount;

    ImageContainer(OciImage image) throws IOException {
        this.image = image;
        this.unshare = hostTool("unshare");
        this.mount = hostTool("mount");
        // mount points a runtime provides; the image need not ship them
        Files.createDirectories(image.rootfs().resolve("proc"));
        Files.createDirectories(image.rootfs().resolve("dev"));
    }

    /** The process for {@code entrypoint + args} inside the image. */
    ProcessBuilder command(String... args) {
        List<String> cmd = new ArrayList<>(List.of(unshare, "--mount", "--pid", "--fork", "--kill-child"));
        boolean root = "0".equals(uid());
        if (!root) {
            cmd.addAll(1, List.of("--user", "--map-root-user"));
        }
        // bind /dev in the outer namespace, then chroot, mount /proc and switch user in the inner one
        cmd.addAll(List.of("/bin/sh", "-c", "\"$1\" --rbind /dev \"$2/dev\" && shift 2 && exec \"$@\"", "sh", mount,
                image.rootfs().toString(), unshare, "--root=" + image.rootfs(), "--mount-proc"));
        String dir = image.config().path("WorkingDir").asText("");
        if (!dir.isEmpty()) {
            cmd.add("--wd=" + dir);
        }
        String user = image.config().path("User").asText("");
        if (root && !user.isEmpty()) {
            String[] ug = user.split(":", 2);
            cmd.addAll(List.of("--setuid", ug[0], "--setgid", ug.length > 1 ? ug[1] : ug[0]));
        }
        cmd.addAll(image.entrypoint());
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd);
        Map<String, String> env = pb.environment();
        env.clear();
        for (String kv : image.env()) {
            int eq = kv.indexOf('=');
            env.put(kv.substring(0, eq), kv.substring(eq + 1));
        }
        return pb;
    }

    private static String uid() {
        try {
            return Files.getAttribute(Path.of("/proc/self"), "unix:uid").toString();
        } catch (IOException | UnsupportedOperationException e) {
            return "-1";
        }
    }

    /** A host program's absolute path: the container's PATH is the image's, where host tools are not. */
    private static String hostTool(String name) {
        return HostTools.onPath(name).map(Path::toString).orElseThrow(() -> new IllegalStateException(
                name + " (util-linux) is not on PATH: the image test needs it to run the image"));
    }
}
