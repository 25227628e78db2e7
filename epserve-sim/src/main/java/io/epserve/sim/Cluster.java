package io.epserve.sim;

/**
 * The serving setup: W expert workers (0 = the experts run inside each frontend, the single
 * process), F frontends each decoding {@code batch} sequences per step (split into two
 * micro-batches with overlap), N hosts.
 *
 * @param workers         expert worker processes; 0 for single-process frontends
 * @param hosts           hosts (each with one network link)
 * @param frontends       frontend processes; each steps its own batch
 * @param batch           sequences per frontend per step (decode: one token each)
 * @param overlap         two micro-batches per step, one's dispatch in flight while the other computes
 * @param frontendThreads kernel threads of a frontend
 * @param workerThreads   kernel threads of a worker
 * @param cpu             which processes share cores
 * @param layout          where frontends and workers run
 */
public record Cluster(int workers, int hosts, int frontends, int batch, boolean overlap, int frontendThreads, int workerThreads, Cpu cpu,
                      HostLayout layout) {

    public Cluster {
        if (workers < 0 || hosts < 1 || frontends < 1 || batch < 1 || frontendThreads < 1 || workerThreads < 1) {
            throw new IllegalArgumentException("cluster needs workers >= 0 and hosts, frontends, batch, threads >= 1; got workers " + workers
                    + ", hosts " + hosts + ", frontends " + frontends + ", batch " + batch + ", threads " + frontendThreads + "/" + workerThreads);
        }
        if (layout == HostLayout.FRONTEND_HOST && hosts < 2 && workers > 0) {
            throw new IllegalArgumentException("the frontend-host layout needs at least 2 hosts (one for the frontends), got " + hosts);
        }
        if (overlap && batch < 2) {
            throw new IllegalArgumentException("overlap splits a step into two micro-batches: it needs batch >= 2, got " + batch);
        }
    }

    public int frontendHost(int f) {
        return layout == HostLayout.FRONTEND_HOST ? 0 : f % hosts;
    }

    public int workerHost(int w) {
        return layout == HostLayout.FRONTEND_HOST ? 1 + w % (hosts - 1) : w % hosts;
    }

    public Cluster withWorkers(int w, int h, int f) {
        return new Cluster(w, h, f, batch, overlap, frontendThreads, workerThreads, cpu, layout);
    }

    public Cluster withOverlap(boolean on) {
        return new Cluster(workers, hosts, frontends, batch, on, frontendThreads, workerThreads, cpu, layout);
    }
}
