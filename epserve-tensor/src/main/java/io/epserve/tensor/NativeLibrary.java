package io.epserve.tensor;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Locale;

/**
 * An optional native kernel library shipped inside this module's jar (built from
 * {@code src/main/c} by the module's build): where it may be used, and how it is opened.
 */
record NativeLibrary(String resource) {

    /**
     * Why the library is not even tried here, or null when it is: {@code epserve.kernels} set to
     * {@code vector} or {@code scalar}, not Linux on x86-64, a JVM whose float vectors do not have
     * the 8 lanes the native code reproduces, or the library absent (no C compiler at build time).
     */
    String refusal() {
        String kernels = System.getProperty("epserve.kernels");
        if ("vector".equals(kernels) || "scalar".equals(kernels)) {
            return "epserve.kernels=" + kernels;
        }
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "");
        if (!os.startsWith("linux") || !(arch.equals("amd64") || arch.equals("x86_64"))) {
            return "no native kernels for " + os + "/" + arch;
        }
        if (VectorKernels.L != 8) {
            return VectorKernels.L + " float lanes";
        }
        if (NativeLibrary.class.getResource(resource) == null) {
            return "native library not built";
        }
        return null;
    }

    /**
     * Copies the library out of the jar and opens it. The copy is deleted once opened: the
     * mapping stays valid, and no file is left behind whatever way the JVM ends.
     */
    SymbolLookup open() throws IOException {
        Path tmp = Files.createTempFile("epserve-native-", ".so");
        try {
            try (InputStream in = NativeLibrary.class.getResourceAsStream(resource)) {
                if (in == null) {
                    throw new IOException(resource + " not found");
                }
                Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING);
            }
            return SymbolLookup.libraryLookup(tmp, Arena.global());
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /** The address of a symbol the library must have. */
    static MemorySegment symbol(SymbolLookup lib, String resource, String name) {
        return lib.find(name).orElseThrow(() -> new IllegalStateException(resource + " has no symbol " + name));
    }
}
