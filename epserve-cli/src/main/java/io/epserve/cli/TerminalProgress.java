package io.epserve.cli;

import io.epserve.format.Progress;
import java.io.PrintStream;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A progress bar on stderr for long checkpoint work. Drawn only on an interactive terminal and
 * only for work large enough to be worth watching; redrawn at most every 100 ms.
 */
final class TerminalProgress implements Progress {
    private static final long MIN_BYTES = 256L << 20;
    private final PrintStream err;
    private final boolean enabled;
    private final AtomicLong done = new AtomicLong();
    private volatile long total;
    private volatile String what = "";
    private volatile long lastDraw;
    private volatile boolean drawing;

    TerminalProgress(PrintStream err, boolean interactive) {
        this.err = err;
        this.enabled = interactive;
    }

    static TerminalProgress forStderr() {
        return new TerminalProgress(System.err, System.console() != null && System.getenv("EPSERVE_NO_PROGRESS") == null);
    }

    @Override
    public void start(String what, long totalBytes) {
        this.what = what;
        this.total = totalBytes;
        done.set(0);
        drawing = enabled && totalBytes >= MIN_BYTES;
        draw(true);
    }

    @Override
    public void advance(long bytes) {
        done.addAndGet(bytes);
        draw(false);
    }

    @Override
    public void done() {
        if (drawing) {
            done.set(total);
            draw(true);
            err.println();
            drawing = false;
        }
    }

    private void draw(boolean force) {
        if (!drawing) {
            return;
        }
        long now = System.nanoTime();
        if (!force && now - lastDraw < 100_000_000L) {
            return;
        }
        lastDraw = now;
        synchronized (this) {
            double f = total == 0 ? 1 : Math.min(1.0, (double) done.get() / total);
            int width = 30;
            int filled = (int) (f * width);
            err.printf("\r%-32s [%s%s] %3d%% %,d/%,d MB", what, "#".repeat(filled), " ".repeat(width - filled),
                    (int) (f * 100), done.get() >> 20, total >> 20);
            err.flush();
        }
    }
}
