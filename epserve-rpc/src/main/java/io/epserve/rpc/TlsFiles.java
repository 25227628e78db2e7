package io.epserve.rpc;

import io.grpc.ChannelCredentials;
import io.grpc.ServerCredentials;
import io.grpc.TlsChannelCredentials;
import io.grpc.TlsServerCredentials;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;

/**
 * Mutual TLS between frontends and workers, from PEM files: this side's certificate chain and
 * PKCS#8 private key, and the CA that signed the other side's. A worker requires a client
 * certificate signed by the CA; a frontend checks that the worker's certificate is signed by the
 * CA and names the address it dials (subjectAltName). README "Security" shows the openssl commands
 * that make a small CA for a test cluster.
 */
public record TlsFiles(Path cert, Path key, Path ca) {
    public TlsFiles {
        Objects.requireNonNull(cert, "cert");
        Objects.requireNonNull(key, "key");
        Objects.requireNonNull(ca, "ca");
        requireFile(cert, "--tls-cert");
        requireFile(key, "--tls-key");
        requireFile(ca, "--tls-ca");
    }

    /** All three options or none: null when none is given, else the files (an error naming what is missing). */
    public static TlsFiles fromOptions(Path cert, Path key, Path ca) {
        if (cert == null && key == null && ca == null) {
            return null;
        }
        if (cert == null || key == null || ca == null) {
            throw new IllegalArgumentException("mutual TLS needs all of --tls-cert, --tls-key and --tls-ca");
        }
        return new TlsFiles(cert, key, ca);
    }

    private static void requireFile(Path p, String option) {
        if (!Files.isRegularFile(p)) {
            throw new IllegalArgumentException(option + " " + p + ": no such file");
        }
    }

    /** A worker's side: its certificate, and client certificates required, signed by the CA. */
    ServerCredentials serverCredentials() {
        try {
            return TlsServerCredentials.newBuilder().keyManager(cert.toFile(), key.toFile()).trustManager(ca.toFile())
                    .clientAuth(TlsServerCredentials.ClientAuth.REQUIRE).build();
        } catch (IOException | IllegalArgumentException e) {
            throw new IllegalArgumentException("cannot use the TLS files " + this + ": " + e.getMessage(), e);
        }
    }

    /** A frontend's side: its client certificate, and the workers' checked against the CA. */
    ChannelCredentials channelCredentials() {
        try {
            return TlsChannelCredentials.newBuilder().keyManager(cert.toFile(), key.toFile()).trustManager(ca.toFile()).build();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot use the TLS files " + this + ": " + e.getMessage(), e);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("cannot use the TLS files " + this + ": " + e.getMessage(), e);
        }
    }

    @Override
    public String toString() {
        return "cert " + cert + ", key " + key + ", CA " + ca;
    }
}
