package io.epserve.rpc;

import io.grpc.ChannelCredentials;
import io.grpc.InsecureChannelCredentials;
import io.grpc.InsecureServerCredentials;
import io.grpc.ServerCredentials;
import java.net.InetAddress;
import java.net.UnknownHostException;

/**
 * How frontends and workers authenticate each other, the same value on both sides: a shared
 * secret checked on every expert-service call, mutual TLS, both, or neither. With neither, a
 * worker listens on loopback only ({@link #requireListenable}).
 *
 * @param secret the shared secret, or null
 * @param tls    certificate, key and CA for mutual TLS, or null
 */
public record WorkerSecurity(WorkerSecret secret, TlsFiles tls) {
    public static final WorkerSecurity NONE = new WorkerSecurity(null, null);

    public boolean authenticated() {
        return secret != null || tls != null;
    }

    public WorkerSecurity withSecret(WorkerSecret s) {
        return new WorkerSecurity(s, tls);
    }

    public WorkerSecurity withTls(TlsFiles t) {
        return new WorkerSecurity(secret, t);
    }

    ServerCredentials serverCredentials() {
        return tls != null ? tls.serverCredentials() : InsecureServerCredentials.create();
    }

    ChannelCredentials channelCredentials() {
        return tls != null ? tls.channelCredentials() : InsecureChannelCredentials.create();
    }

    /**
     * Refuses an unauthenticated worker on anything but a loopback address: without a secret or
     * TLS, whoever reaches the port controls the worker.
     */
    void requireListenable(String host) {
        if (authenticated()) {
            return;
        }
        boolean loopback;
        try {
            loopback = InetAddress.getByName(host).isLoopbackAddress();
        } catch (UnknownHostException e) {
            throw new IllegalArgumentException("--listen " + host + ": unknown host");
        }
        if (!loopback) {
            throw new IllegalArgumentException("refusing to listen on " + host + " without authentication: anyone who reaches "
                    + "the port could use the worker. Give --auth-secret-file FILE and/or --tls-cert/--tls-key/--tls-ca, "
                    + "or listen on a loopback address (127.0.0.1)");
        }
    }

    /** One line for logs: what is checked (never the secret). */
    public String describe() {
        if (!authenticated()) {
            return "unauthenticated (loopback only)";
        }
        return (secret != null ? "shared secret" : "") + (secret != null && tls != null ? " + " : "") + (tls != null ? "mutual TLS" : "");
    }
}
