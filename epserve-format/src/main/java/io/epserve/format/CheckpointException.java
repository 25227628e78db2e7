package io.epserve.format;

/**
 * A checkpoint that cannot be used as it is: a missing or truncated file, a header that lies,
 * a missing tensor, a tensor of the wrong shape or dtype, a non-finite value. The message is one
 * line that names the file and, where there is one, the tensor.
 */
public class CheckpointException extends RuntimeException {
    public CheckpointException(String message) {
        super(message);
    }

    public CheckpointException(String message, Throwable cause) {
        super(message, cause);
    }
}
