package io.epserve.rpc;

import com.google.protobuf.CodedOutputStream;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.MessageLite;
import io.epserve.rpc.shm.ShmRing;
import io.epserve.rpc.v1.ComputeRequest;
import io.epserve.rpc.v1.ComputeResponse;
import io.grpc.Status;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * What the messages on an expert worker's shared-memory rings are (expert.proto, AttachRing): the
 * same protobuf bytes as on the Compute stream, so both transports carry the same numbers and
 * are checked by the same code.
 * <pre>
 *   request (frontend → worker):  a serialized ComputeRequest
 *   answer  (worker → frontend):  u8 kind, then
 *       kind 0  a serialized ComputeResponse
 *       kind 1  a refusal of one request:  i64 id │ i32 gRPC status code │ UTF-8 description (≤ 4 KiB)
 * </pre>
 */
final class RingMessages {
    private RingMessages() {}

    static final byte ANSWER = 0;
    static final byte REFUSAL = 1;
    private static final int MAX_DESCRIPTION = 4096;
    private static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Writes {@code msg} ({@code size} = its serialized size) into {@code room}, which has exactly that many bytes. */
    static void write(MessageLite msg, int size, MemorySegment room, int offset) {
        try {
            CodedOutputStream out = CodedOutputStream.newInstance(room.asSlice(offset, size).asByteBuffer());
            msg.writeTo(out);
            out.checkNoSpaceLeft();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** A request as the worker reads it (copied out of the ring). */
    static ComputeRequest request(MemorySegment payload) throws InvalidProtocolBufferException {
        return ComputeRequest.parseFrom(payload.asByteBuffer());
    }

    /** Bytes of the answer {@code r} on the ring. */
    static int answerBytes(ComputeResponse r) {
        return 1 + r.getSerializedSize();
    }

    /** Writes answer {@code r} into {@code room} of {@link #answerBytes} bytes. */
    static void writeAnswer(ComputeResponse r, MemorySegment room) {
        room.set(ValueLayout.JAVA_BYTE, 0, ANSWER);
        write(r, (int) room.byteSize() - 1, room, 1);
    }

    /** The refusal's description as it goes on the ring (cut to 4 KiB). */
    static byte[] description(Status s) {
        String d = s.getDescription() == null ? "" : s.getDescription();
        byte[] b = d.getBytes(StandardCharsets.UTF_8);
        if (b.length <= MAX_DESCRIPTION) {
            return b;
        }
        // a character cut in two decodes as one U+FFFD (3 bytes): still within the limit
        return new String(b, 0, MAX_DESCRIPTION - 3, StandardCharsets.UTF_8).getBytes(StandardCharsets.UTF_8);
    }

    static int refusalBytes(byte[] description) {
        return 1 + 8 + 4 + description.length;
    }

    static void writeRefusal(long id, Status s, byte[] description, MemorySegment room) {
        room.set(ValueLayout.JAVA_BYTE, 0, REFUSAL);
        room.set(I64, 1, id);
        room.set(I32, 9, s.getCode().value());
        MemorySegment.copy(MemorySegment.ofArray(description), 0, room, 13, description.length);
    }

    /** One answer read back on the frontend: a response, or a refusal of request {@code id}. */
    record Answer(ComputeResponse response, long id, Status refusal) {}

    /** Reads an answer (copied out of the ring); throws IllegalArgumentException for bytes that are none. */
    static Answer answer(MemorySegment payload) {
        if (payload.byteSize() < 1) {
            throw new IllegalArgumentException("an empty answer");
        }
        byte kind = payload.get(ValueLayout.JAVA_BYTE, 0);
        if (kind == ANSWER) {
            try {
                ComputeResponse r = ComputeResponse.parseFrom(payload.asSlice(1).asByteBuffer());
                return new Answer(r, r.getId(), null);
            } catch (InvalidProtocolBufferException e) {
                throw new IllegalArgumentException("an answer that is no ComputeResponse: " + e.getMessage());
            }
        }
        if (kind == REFUSAL && payload.byteSize() >= 13 && payload.byteSize() <= 13 + MAX_DESCRIPTION) {
            long id = payload.get(I64, 1);
            int code = payload.get(I32, 9);
            String d = new String(payload.asSlice(13).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
            return new Answer(null, id, Status.fromCodeValue(code).withDescription(d));
        }
        throw new IllegalArgumentException("an answer of kind " + kind + " and " + payload.byteSize() + " bytes");
    }

    /** The largest answer a request of {@code tokens × hidden} may get: int64 exact sums, and the response's framing. */
    static long maxAnswerBytes(int tokens, int hidden) {
        return 1 + 8L * tokens * hidden + 64;
    }

    /** Whether a request of {@code requestBytes} whose answer may take {@code answerBytes} travels on rings of {@code ring}'s size. */
    static boolean fits(ShmRing ring, long requestBytes, long answerBytes) {
        return requestBytes <= ring.maxMessage() && answerBytes <= ring.maxMessage();
    }
}
