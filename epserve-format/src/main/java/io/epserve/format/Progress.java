package io.epserve.format;

/** Receives progress of long checkpoint work (mapping, validating, writing), in bytes. */
public interface Progress {
    Progress NONE = new Progress() {
        @Override
        public void start(String what, long totalBytes) {}

        @Override
        public void advance(long bytes) {}

        @Override
        public void done() {}
    };

    void start(String what, long totalBytes);

    /** Called from any thread. */
    void advance(long bytes);

    void done();
}
