package io.epserve.server;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;
import java.util.logging.Level;
import java.util.logging.Logger;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.openqa.selenium.JavascriptExecutor;
import org.openqa.selenium.chrome.ChromeDriver;
import org.openqa.selenium.chrome.ChromeDriverService;
import org.openqa.selenium.chrome.ChromeOptions;

/**
 * The live view in headless Chromium (through chromedriver): the page connects to the live feed,
 * and after real requests its heatmap holds, cell for cell, the routed-token counts the metrics
 * export, and its worker panel the per-worker loads.
 *
 * <p>Needs the Debian packages chromium and chromium-driver
 * (src/test/resources/install-chromium.sh installs them); EPSERVE_CHROMIUM and
 * EPSERVE_CHROMEDRIVER override the paths; EPSERVE_SKIP_BROWSER_TESTS=1 skips this test.
 */
class LiveViewBrowserTest {
    /** Selenium warns that it has no DevTools bindings for this Chromium's version; this test does not use DevTools. */
    private static final Logger CDP_LOG = Logger.getLogger("org.openqa.selenium.devtools");

    static {
        CDP_LOG.setLevel(Level.SEVERE);
    }

    @TempDir
    Path profile;

    private static String path(String env, String def) {
        String v = System.getenv(env);
        return v != null && !v.isBlank() ? v : def;
    }

    @Test
    void heatmapShowsTheRoutedTokensOfRealRequests() throws Exception {
        Assumptions.assumeFalse("1".equals(System.getenv("EPSERVE_SKIP_BROWSER_TESTS")), "EPSERVE_SKIP_BROWSER_TESTS=1");
        String chromium = path("EPSERVE_CHROMIUM", "/usr/bin/chromium");
        String chromedriver = path("EPSERVE_CHROMEDRIVER", "/usr/bin/chromedriver");
        assertThat(Files.isExecutable(Path.of(chromium)) && Files.isExecutable(Path.of(chromedriver)))
                .as("%s and %s are needed: run epserve-server/src/test/resources/install-chromium.sh "
                        + "(or set EPSERVE_SKIP_BROWSER_TESTS=1)", chromium, chromedriver).isTrue();

        try (TestStack s = TestStack.start(TestStack.ENGINE, true, true)) {
            ChromeOptions options = new ChromeOptions();
            options.setBinary(chromium);
            options.addArguments("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1000", "--user-data-dir=" + profile.toAbsolutePath());
            ChromeDriverService service = new ChromeDriverService.Builder().usingDriverExecutable(new File(chromedriver))
                    .usingAnyFreePort().build();
            ChromeDriver driver = new ChromeDriver(service, options);
            try {
                JavascriptExecutor js = driver;
                driver.get(s.server.baseUri() + "/");
                awaitPage("the live feed's first message", () -> js.executeScript(
                        "return document.body.dataset.updates && document.getElementById('status').dataset.state === 'live'"));
                int layers = s.served.layout().sparseLayers().length;
                int experts = s.served.layout().experts();
                assertThat(((Number) js.executeScript("return document.querySelectorAll('#heatmap td.cell').length")).intValue())
                        .isEqualTo(layers * experts);
                assertThat(totals(js)).as("no requests yet").containsOnly(0L);

                for (int i = 0; i < 3; i++) {
                    assertThat(s.post("/v1/completions", Map.of("prompt", "Live view request " + i, "max_tokens", 12,
                            "ignore_eos", true)).statusCode()).isEqualTo(200);
                }
                String metrics = s.get("/metrics").body();
                long expectedSum = 0;
                long[] expected = new long[layers * experts];
                int[] sparse = s.served.layout().sparseLayers();
                for (int r = 0; r < layers; r++) {
                    for (int e = 0; e < experts; e++) {
                        expected[r * experts + e] = (long) TestStack.metric(metrics,
                                "epserve_expert_routed_tokens_total{expert=\"" + e + "\",layer=\"" + sparse[r] + "\"}");
                        expectedSum += expected[r * experts + e];
                    }
                }
                assertThat(expectedSum).isPositive();
                long want = expectedSum;
                awaitPage("the heatmap to show the requests' tokens", () -> totals(js).stream().mapToLong(Long::longValue).sum() == want);
                List<Long> cells = totals(js);
                for (int i = 0; i < expected.length; i++) {
                    assertThat(cells.get(i)).as("heatmap cell %d (layer row %d, expert %d)", i, i / experts, i % experts)
                            .isEqualTo(expected[i]);
                }
                // the displayed text of a hot cell is its value, and the workers' loads add up to the heatmap
                assertThat(js.executeScript("const c = [...document.querySelectorAll('#heatmap td.cell')]"
                        + ".find(td => Number(td.dataset.value) > 0); return c ? c.textContent : null")).isNotNull().isNotEqualTo("0");
                @SuppressWarnings("unchecked")
                List<Object> workerTokens = (List<Object>) js.executeScript(
                        "return [...document.querySelectorAll('#workers .worker')].map(w => Number(w.dataset.tokens))");
                assertThat(workerTokens).hasSize(s.served.layout().workers().size());
                js.executeScript("document.querySelector('input[name=mode][value=total]').click()");
                @SuppressWarnings("unchecked")
                List<Object> workerTotals = (List<Object>) js.executeScript(
                        "return [...document.querySelectorAll('#workers .worker')].map(w => Number(w.dataset.tokens))");
                assertThat(workerTotals.stream().mapToLong(o -> ((Number) o).longValue()).sum()).isEqualTo(expectedSum);
                assertThat((String) js.executeScript("return document.getElementById('model').textContent"))
                        .isEqualTo(ServedModel.DEMO_NAME);
                awaitPage("the tiles", () -> js.executeScript(
                        "return document.getElementById('k-kv').textContent.includes('/')"));
                // for people: what the view looked like (target/live-view.png)
                Files.write(Path.of("target", "live-view.png"), driver.getScreenshotAs(org.openqa.selenium.OutputType.BYTES));
            } finally {
                driver.quit();
            }
        }
    }

    private static List<Long> totals(JavascriptExecutor js) {
        @SuppressWarnings("unchecked")
        List<Object> v = (List<Object>) js.executeScript(
                "return [...document.querySelectorAll('#heatmap td.cell')].map(td => Number(td.dataset.total))");
        return v.stream().map(o -> ((Number) o).longValue()).toList();
    }

    private static void awaitPage(String what, Supplier<Object> condition) throws InterruptedException {
        long deadline = System.nanoTime() + TestStack.TIMEOUT.toNanos();
        while (!Boolean.TRUE.equals(condition.get())) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(50);
        }
    }
}
