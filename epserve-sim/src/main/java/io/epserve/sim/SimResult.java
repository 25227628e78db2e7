package io.epserve.sim;

/**
 * What one simulated run gives.
 *
 * @param tokensPerSecond     decoded tokens per second over all frontends
 * @param stepP50             step time percentiles (seconds), over every frontend's steps
 * @param stepP90             90th percentile
 * @param stepP99             99th percentile
 * @param stepMean            mean step time
 * @param workerUtilisation   per worker, busy time / run time
 * @param frontendUtilisation per frontend, busy time / run time
 * @param wireBytesPerToken   bytes on the wire (both directions) per decoded token
 * @param imbalance           mean over dispatches of (max tokens on a worker / mean tokens per worker)
 * @param seconds             simulated run time
 */
public record SimResult(double tokensPerSecond, double stepP50, double stepP90, double stepP99, double stepMean, double[] workerUtilisation,
                        double[] frontendUtilisation, double wireBytesPerToken, double imbalance, double seconds) {

    public SimResult {
        workerUtilisation = workerUtilisation.clone();
        frontendUtilisation = frontendUtilisation.clone();
    }

    @Override
    public double[] workerUtilisation() {
        return workerUtilisation.clone();
    }

    @Override
    public double[] frontendUtilisation() {
        return frontendUtilisation.clone();
    }

    public double meanWorkerUtilisation() {
        double s = 0;
        for (double u : workerUtilisation) {
            s += u;
        }
        return workerUtilisation.length == 0 ? 0 : s / workerUtilisation.length;
    }
}
