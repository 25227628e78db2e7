package io.epserve.operator.api;

import com.fasterxml.jackson.annotation.JsonValue;
import java.util.Locale;

/** The {@code --expert-dtype} values of {@code epserve serve} and {@code epserve worker}. */
public enum ExpertDtype {
    Q8_0, Q4_0, Q4_K, BF16, F16, F32;

    /** The spelling on the command line and in the resource, e.g. {@code q4_k}. */
    @JsonValue
    public String flagValue() {
        return name().toLowerCase(Locale.ROOT);
    }
}
