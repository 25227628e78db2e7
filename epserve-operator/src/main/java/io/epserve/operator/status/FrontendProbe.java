package io.epserve.operator.status;

import java.net.URI;
import java.util.List;

/** Asks the ready frontends (by base URL, e.g. {@code http://10.0.0.7:8080}) how the service is doing. */
@FunctionalInterface
public interface FrontendProbe {
    FrontendReport observe(List<URI> frontends);
}
