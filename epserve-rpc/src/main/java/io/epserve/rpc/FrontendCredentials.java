package io.epserve.rpc;

import io.grpc.CallCredentials;
import io.grpc.Metadata;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.concurrent.Executor;
import java.util.regex.Pattern;

/**
 * What a frontend says about itself on every call to a worker: its identity (the header
 * {@value #FRONTEND_ID_HEADER}, so a worker serves one frontend at a time) and, when the cluster
 * has one, the shared secret ({@code authorization: Bearer <secret>}).
 */
final class FrontendCredentials extends CallCredentials {
    static final String FRONTEND_ID_HEADER = "epserve-frontend-id";
    static final Metadata.Key<String> FRONTEND_ID = Metadata.Key.of(FRONTEND_ID_HEADER, Metadata.ASCII_STRING_MARSHALLER);
    static final Metadata.Key<String> AUTHORIZATION = Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
    private static final Pattern ID = Pattern.compile("[A-Za-z0-9_-]{1,64}");
    private static final SecureRandom RANDOM = new SecureRandom();

    private final String frontendId;
    private final WorkerSecret secret;

    FrontendCredentials(String frontendId, WorkerSecret secret) {
        if (!isValidId(frontendId)) {
            throw new IllegalArgumentException("frontend id must match " + ID + ", got '" + frontendId + "'");
        }
        this.frontendId = frontendId;
        this.secret = secret;
    }

    /** A fresh random identity (128 bits): two frontends never share one. */
    static String newFrontendId() {
        byte[] b = new byte[16];
        RANDOM.nextBytes(b);
        return HexFormat.of().formatHex(b);
    }

    static boolean isValidId(String id) {
        return id != null && ID.matcher(id).matches();
    }

    @Override
    public void applyRequestMetadata(RequestInfo info, Executor appExecutor, MetadataApplier applier) {
        Metadata headers = new Metadata();
        headers.put(FRONTEND_ID, frontendId);
        if (secret != null) {
            headers.put(AUTHORIZATION, secret.headerValue());
        }
        applier.apply(headers);
    }
}
