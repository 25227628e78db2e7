package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.epserve.rpc.ScalingPolicy.Decision;
import io.epserve.rpc.ScalingPolicy.WorkerLoad;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The scaling decisions on a fake clock: sustained windows, cooldown, bounds, which worker retires; and the busy meter. */
class ScalingPolicyTest {
    static final long S = 1_000_000_000L;
    static final ScalingPolicy.Config CONFIG = new ScalingPolicy.Config(1, 3, 0.8, Duration.ofSeconds(10), 0.1, Duration.ofSeconds(30),
            Duration.ofSeconds(20));

    static List<WorkerLoad> loads(double... busy) {
        List<WorkerLoad> out = new ArrayList<>();
        for (int i = 0; i < busy.length; i++) {
            out.add(new WorkerLoad("w" + i, busy[i]));
        }
        return out;
    }

    /** Feeds one sample a second from {@code from} to {@code to} seconds; returns the first non-Hold decision, or the last Hold. */
    static Decision run(ScalingPolicy p, long from, long to, int workers, List<WorkerLoad> loads) {
        Decision d = null;
        for (long t = from; t <= to; t++) {
            d = p.decide(t * S, workers, loads, true);
            if (!(d instanceof Decision.Hold)) {
                return d;
            }
        }
        return d;
    }

    @Test
    void addsAWorkerOnlyAfterTheExpertLayerStaysBusyForTheWindow() {
        ScalingPolicy p = new ScalingPolicy(CONFIG);
        assertThat(run(p, 0, 9, 1, loads(0.95))).as("9 s busy").isInstanceOf(Decision.Hold.class);
        assertThat(p.decide(10 * S, 1, loads(0.95), true)).as("10 s busy").isInstanceOf(Decision.Add.class);
    }

    @Test
    void aDipBelowTheTargetStartsTheWindowOver() {
        ScalingPolicy p = new ScalingPolicy(CONFIG);
        run(p, 0, 8, 2, loads(0.9, 0.85));
        assertThat(p.decide(9 * S, 2, loads(0.9, 0.5), true)).as("mean 0.7").isInstanceOf(Decision.Hold.class);
        assertThat(run(p, 10, 19, 2, loads(0.9, 0.9))).isInstanceOf(Decision.Hold.class);
        assertThat(p.decide(20 * S, 2, loads(0.9, 0.9), true)).isInstanceOf(Decision.Add.class);
    }

    @Test
    void theMeanDecidesNotOneHotWorker() {
        ScalingPolicy p = new ScalingPolicy(CONFIG);
        assertThat(run(p, 0, 60, 2, loads(1.0, 0.2))).as("mean 0.6 < 0.8").isInstanceOf(Decision.Hold.class);
    }

    @Test
    void cooldownAfterAChangeThenAddsAgainUpToTheMost() {
        ScalingPolicy p = new ScalingPolicy(CONFIG);
        assertThat(run(p, 0, 10, 1, loads(0.9))).isInstanceOf(Decision.Add.class);
        // busy again at once: the window is met at 20 s, but the cooldown lasts until 30 s
        Decision d = run(p, 11, 29, 2, loads(0.9, 0.9));
        assertThat(d).isInstanceOf(Decision.Hold.class);
        assertThat(((Decision.Hold) d).why()).contains("cooling down");
        assertThat(p.decide(30 * S, 2, loads(0.9, 0.9), true)).isInstanceOf(Decision.Add.class);
        Decision atMost = run(p, 31, 120, 3, loads(0.9, 0.9, 0.9));
        assertThat(atMost).isInstanceOf(Decision.Hold.class);
        assertThat(((Decision.Hold) atMost).why()).contains("the most");
    }

    @Test
    void retiresTheLeastBusyAfterAllStayIdleAndNeverGoesBelowTheFewest() {
        ScalingPolicy p = new ScalingPolicy(CONFIG);
        assertThat(run(p, 0, 29, 3, loads(0.05, 0.0, 0.02))).isInstanceOf(Decision.Hold.class);
        assertThat(p.decide(30 * S, 3, loads(0.05, 0.0, 0.02), true)).isEqualTo(new Decision.Retire("w1",
                "every worker's busy fraction <= 0.10 for 30000 ms"));
        // one worker above the idle line keeps the pool
        assertThat(run(p, 31, 200, 2, loads(0.05, 0.3))).isInstanceOf(Decision.Hold.class);
        Decision d = run(p, 201, 400, 1, loads(0.0));
        assertThat(d).isInstanceOf(Decision.Hold.class);
        assertThat(((Decision.Hold) d).why()).contains("the fewest");
    }

    @Test
    void amongEquallyIdleWorkersTheNewestRetires() {
        ScalingPolicy p = new ScalingPolicy(CONFIG);
        Decision d = run(p, 0, 30, 3, loads(0, 0, 0));
        assertThat(d).isInstanceOf(Decision.Retire.class);
        assertThat(((Decision.Retire) d).worker()).isEqualTo("w2");
    }

    @Test
    void aChangeInProgressHoldsAndStartsTheWindowsOver() {
        ScalingPolicy p = new ScalingPolicy(CONFIG);
        run(p, 0, 9, 1, loads(0.9));
        assertThat(p.decide(10 * S, 1, loads(0.9), false)).isEqualTo(new Decision.Hold("a change is in progress"));
        assertThat(run(p, 11, 20, 1, loads(0.9))).isInstanceOf(Decision.Hold.class);
        assertThat(p.decide(21 * S, 1, loads(0.9), true)).isInstanceOf(Decision.Add.class);
    }

    @Test
    void aPoolOutsideItsBoundsIsBroughtBackAtOnce() {
        ScalingPolicy p = new ScalingPolicy(new ScalingPolicy.Config(2, 3, 0.8, Duration.ofSeconds(10), 0.1, Duration.ofSeconds(30),
                Duration.ofSeconds(20)));
        assertThat(p.decide(0, 1, loads(0.5), true)).isInstanceOf(Decision.Add.class);
        assertThat(p.decide(S, 4, loads(0.5, 0.5, 0.4, 0.5), true)).isEqualTo(new Decision.Retire("w2",
                "4 worker(s), more than the 3 at most"));
    }

    @Test
    void aFixedPoolNeverScales() {
        ScalingPolicy p = new ScalingPolicy(ScalingPolicy.Config.fixed(2));
        assertThat(p.config().scales()).isFalse();
        assertThat(run(p, 0, 600, 2, loads(1.0, 1.0))).isInstanceOf(Decision.Hold.class);
        assertThat(run(p, 601, 1200, 2, loads(0, 0))).isInstanceOf(Decision.Hold.class);
    }

    @Test
    void badSettingsAreRefusedNamingThem() {
        assertThatThrownBy(() -> new ScalingPolicy.Config(0, 2, 0.8, Duration.ZERO, 0.1, Duration.ZERO, Duration.ZERO))
                .hasMessageContaining("fewest workers must be at least 1");
        assertThatThrownBy(() -> new ScalingPolicy.Config(3, 2, 0.8, Duration.ZERO, 0.1, Duration.ZERO, Duration.ZERO))
                .hasMessageContaining("most workers (2) must be at least the fewest (3)");
        assertThatThrownBy(() -> new ScalingPolicy.Config(1, 2, 1.5, Duration.ZERO, 0.1, Duration.ZERO, Duration.ZERO))
                .hasMessageContaining("scale-up busy fraction must be in (0, 1]");
        assertThatThrownBy(() -> new ScalingPolicy.Config(1, 2, 0.5, Duration.ZERO, 0.6, Duration.ZERO, Duration.ZERO))
                .hasMessageContaining("scale-down busy fraction must be in [0, 0.5)");
        assertThatThrownBy(() -> new ScalingPolicy.Config(1, 2, 0.5, Duration.ofSeconds(-1), 0.1, Duration.ZERO, Duration.ZERO))
                .hasMessageContaining("must not be negative");
        assertThatThrownBy(() -> new WorkerLoad("w", Double.NaN)).hasMessageContaining("busy fraction of w");
    }

    @Test
    void theBusyMeterTurnsCountersIntoFractionsAcrossResetsAndNewWorkers() {
        BusyMeter m = new BusyMeter();
        assertThat(m.measure(0, List.of("a", "b"), Map.of("a", 10.0, "b", 3.0))).as("nothing to compare with yet").isEmpty();
        assertThat(m.measure(2 * S, List.of("a", "b", "c"), Map.of("a", 11.0, "b", 1.0))).containsExactly(
                new WorkerLoad("a", 0.5), // 1 s busy in 2 s
                new WorkerLoad("b", 0.5)); // counter reset: 1 s since it started again
        assertThat(m.measure(4 * S, List.of("a", "c"), Map.of("a", 11.0, "c", 0.5))).containsExactly(
                new WorkerLoad("a", 0.0),
                new WorkerLoad("c", 0.25)); // c was not named at 2 s: 0 s then
    }
}
