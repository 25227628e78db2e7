package io.epserve.operator;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.operator.WorkerScaler.Decision;
import io.epserve.operator.WorkerScaler.LoadSample;
import io.epserve.operator.WorkerScaler.Reason;
import java.time.Duration;
import java.time.Instant;
import java.util.Optional;
import java.util.OptionalDouble;
import org.junit.jupiter.api.Test;

class WorkerScalerTest {
    private static final Instant T0 = Instant.parse("2026-01-01T00:00:00Z");
    private static final Duration COOLDOWN = Duration.ofMinutes(5);
    /** 1000 routed tokens per second per worker, 1..8 workers. */
    private static final ScalingPolicy POLICY = new ScalingPolicy(1, 8, OptionalDouble.of(1000), COOLDOWN);

    /** Decision after {@code tokensPerSecond} for 60 s, last scaled {@code sinceScale} ago. */
    private static Decision after(int current, double tokensPerSecond, Duration sinceScale) {
        Instant now = T0.plusSeconds(60);
        return WorkerScaler.decide(POLICY, current, Optional.of(new LoadSample(10_000, T0)),
                Optional.of(new LoadSample(10_000 + tokensPerSecond * 60, now)), Optional.of(now.minus(sinceScale)), now);
    }

    @Test
    void scalesUpToCarryTheRateAtTheTarget() {
        Decision d = after(2, 5200, Duration.ofHours(1));
        assertThat(d.workers()).isEqualTo(6);
        assertThat(d.reason()).isEqualTo(Reason.SCALED_UP);
        assertThat(d.tokensPerSecond()).isEqualTo(5200.0);
        assertThat(d.autoscaled()).isTrue();
    }

    @Test
    void scalesDownWhenLoadFalls() {
        Decision d = after(6, 1500, Duration.ofHours(1));
        assertThat(d.workers()).isEqualTo(2);
        assertThat(d.reason()).isEqualTo(Reason.SCALED_DOWN);
    }

    @Test
    void neverLeavesTheRange() {
        assertThat(after(4, 1_000_000, Duration.ofHours(1)).workers()).isEqualTo(8);
        assertThat(after(4, 0, Duration.ofHours(1)).workers()).isEqualTo(1);
    }

    @Test
    void ignoresDeviationsWithinTheTolerance() {
        // 4 workers at 1090 tokens/s each: 9 % over the target.
        assertThat(after(4, 4360, Duration.ofHours(1))).isEqualTo(new Decision(4, Reason.STEADY, 4360));
        // 4 workers at 1200 each: beyond the tolerance, 5 workers carry it.
        assertThat(after(4, 4800, Duration.ofHours(1)).workers()).isEqualTo(5);
    }

    @Test
    void holdsDuringTheCooldownAndActsAfterIt() {
        assertThat(after(2, 5200, COOLDOWN.minusSeconds(1))).isEqualTo(new Decision(2, Reason.COOLDOWN, 5200));
        assertThat(after(2, 5200, COOLDOWN).reason()).isEqualTo(Reason.SCALED_UP);
    }

    @Test
    void aSpecChangeMovesIntoTheRangeAtOnceEvenInTheCooldown() {
        ScalingPolicy narrowed = new ScalingPolicy(3, 4, OptionalDouble.of(1000), COOLDOWN);
        Decision d = WorkerScaler.decide(narrowed, 6, Optional.empty(), Optional.empty(), Optional.of(T0), T0);
        assertThat(d.workers()).isEqualTo(4);
        assertThat(d.reason()).isEqualTo(Reason.CLAMPED);
        assertThat(d.autoscaled()).as("a spec change starts no cooldown").isFalse();
        assertThat(WorkerScaler.decide(narrowed, 1, Optional.empty(), Optional.empty(), Optional.of(T0), T0).workers())
                .isEqualTo(3);
    }

    @Test
    void withoutATargetTheCountStays() {
        ScalingPolicy fixed = new ScalingPolicy(2, 8, OptionalDouble.empty(), COOLDOWN);
        Decision d = WorkerScaler.decide(fixed, 2, Optional.of(new LoadSample(0, T0)),
                Optional.of(new LoadSample(1e9, T0.plusSeconds(60))), Optional.empty(), T0.plusSeconds(60));
        assertThat(d).isEqualTo(new Decision(2, Reason.NO_TARGET, Double.NaN));
    }

    @Test
    void holdsWithoutAUsableRate() {
        Instant now = T0.plusSeconds(60);
        Optional<LoadSample> earlier = Optional.of(new LoadSample(50_000, T0));
        // First look: one sample only.
        assertThat(WorkerScaler.decide(POLICY, 2, Optional.empty(), Optional.of(new LoadSample(1, now)), Optional.empty(), now)
                .reason()).isEqualTo(Reason.NO_RATE);
        // Frontends unreachable.
        assertThat(WorkerScaler.decide(POLICY, 2, earlier, Optional.empty(), Optional.empty(), now).reason())
                .isEqualTo(Reason.NO_RATE);
        // Counter reset (a frontend restarted).
        assertThat(WorkerScaler.decide(POLICY, 2, earlier, Optional.of(new LoadSample(10, now)), Optional.empty(), now)
                .reason()).isEqualTo(Reason.NO_RATE);
        // Samples closer than the minimum window.
        Instant soon = T0.plus(WorkerScaler.MIN_WINDOW).minusMillis(1);
        assertThat(WorkerScaler.decide(POLICY, 2, earlier, Optional.of(new LoadSample(10_000_000, soon)), Optional.empty(),
                soon).reason()).isEqualTo(Reason.NO_RATE);
    }

    @Test
    void remembersASampleOnlyOnceTheWindowIsFull() {
        LoadSample old = new LoadSample(100, T0);
        LoadSample early = new LoadSample(200, T0.plus(WorkerScaler.MIN_WINDOW).minusSeconds(1));
        LoadSample late = new LoadSample(300, T0.plus(WorkerScaler.MIN_WINDOW));
        LoadSample reset = new LoadSample(5, T0.plusSeconds(1));
        assertThat(WorkerScaler.remember(Optional.empty(), Optional.of(early))).contains(early);
        assertThat(WorkerScaler.remember(Optional.of(old), Optional.of(early))).contains(old);
        assertThat(WorkerScaler.remember(Optional.of(old), Optional.of(late))).contains(late);
        assertThat(WorkerScaler.remember(Optional.of(old), Optional.empty())).contains(old);
        assertThat(WorkerScaler.remember(Optional.of(old), Optional.of(reset))).contains(reset);
    }
}
