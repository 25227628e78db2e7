package io.epserve.rpc;

import io.epserve.rpc.v1.JoinRequest;
import io.epserve.rpc.v1.JoinResponse;
import io.epserve.rpc.v1.LeaveRequest;
import io.epserve.rpc.v1.LeaveResponse;
import io.epserve.rpc.v1.MembershipServiceGrpc;
import io.grpc.Server;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.util.Objects;
import java.util.concurrent.TimeUnit;

/**
 * The frontend's {@code epserve.expert.v1.MembershipService} ({@code serve --membership-listen
 * HOST:PORT}): workers started with {@code --join} register and leave through it, and
 * {@link Membership} decides. Secured as the workers are ({@link WorkerSecurity}: the shared
 * secret on every call, mutual TLS); without either it listens on loopback only.
 */
public final class MembershipServer implements AutoCloseable {
    private final Server server;
    private final HostPort bound;

    private MembershipServer(Server server, HostPort bound) {
        this.server = server;
        this.bound = bound;
    }

    /** Binds {@code listen} (port 0: a free one) and serves Join and Leave for {@code membership}. */
    public static MembershipServer start(HostPort listen, WorkerSecurity security, Membership membership) {
        Objects.requireNonNull(membership, "membership");
        security.requireListenable(listen.host());
        String name = "membership service " + listen;
        Server s = NettyServerBuilder.forAddress(new InetSocketAddress(listen.host(), listen.port()), security.serverCredentials())
                .addService(ServerInterceptors.intercept(new Service(membership), new WorkerAuthInterceptor(security.secret(), () -> name)))
                .build();
        try {
            s.start();
        } catch (IOException e) {
            throw new UncheckedIOException("--membership-listen: cannot listen on " + listen + ": " + e.getMessage(), e);
        }
        int port = s.getListenSockets().stream().filter(a -> a instanceof InetSocketAddress)
                .mapToInt(a -> ((InetSocketAddress) a).getPort()).findFirst().orElse(listen.port());
        return new MembershipServer(s, new HostPort(listen.host(), port));
    }

    /** The bound address (the real port when 0 was asked for). */
    public HostPort address() {
        return bound;
    }

    @Override
    public void close() {
        server.shutdown();
        try {
            if (!server.awaitTermination(5, TimeUnit.SECONDS)) {
                server.shutdownNow();
            }
        } catch (InterruptedException e) {
            server.shutdownNow();
            Thread.currentThread().interrupt();
        }
    }

    private static final class Service extends MembershipServiceGrpc.MembershipServiceImplBase {
        private final Membership membership;

        Service(Membership membership) {
            this.membership = membership;
        }

        @Override
        public void join(JoinRequest req, StreamObserver<JoinResponse> out) {
            if (req.getCapacity() < 0) {
                out.onError(Status.INVALID_ARGUMENT.withDescription("Join of " + req.getAddress() + " with negative capacity "
                        + req.getCapacity()).asRuntimeException());
                return;
            }
            try {
                HostPort.parse(req.getAddress(), "Join address");
            } catch (IllegalArgumentException e) {
                out.onError(Status.INVALID_ARGUMENT.withDescription(e.getMessage()).asRuntimeException());
                return;
            }
            Membership.Joined j;
            try {
                j = membership.join(req.getAddress(), req.getHostLabel(), req.getCapacity());
            } catch (IllegalArgumentException e) {
                out.onError(Status.FAILED_PRECONDITION.withDescription(e.getMessage()).asRuntimeException());
                return;
            } catch (IllegalStateException e) {
                out.onError(Status.UNAVAILABLE.withDescription("the frontend is closing: " + e.getMessage()).asRuntimeException());
                return;
            }
            out.onNext(JoinResponse.newBuilder().setAdded(j.added()).setEpoch(j.epoch()).build());
            out.onCompleted();
        }

        @Override
        public void leave(LeaveRequest req, StreamObserver<LeaveResponse> out) {
            boolean known;
            try {
                known = membership.leave(req.getAddress());
            } catch (IllegalStateException e) {
                out.onError(Status.UNAVAILABLE.withDescription("the frontend is closing: " + e.getMessage()).asRuntimeException());
                return;
            }
            out.onNext(LeaveResponse.newBuilder().setKnown(known).build());
            out.onCompleted();
        }
    }
}
