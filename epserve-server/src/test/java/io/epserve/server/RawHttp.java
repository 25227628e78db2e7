package io.epserve.server;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * An HTTP/1.1 client over a plain socket that writes exactly the bytes a test gives it and reads
 * responses one by one, so tests can pipeline, half-close, send malformed or slow requests.
 */
final class RawHttp implements AutoCloseable {
    /** One response: status, headers (lower-case names) and the body (chunked bodies de-chunked). */
    record Response(int status, Map<String, String> headers, String body) {
        JsonNode json() throws IOException {
            return TestStack.JSON.readTree(body);
        }

        /** The OpenAI error object of a 4xx/5xx, after checking the body is one. */
        JsonNode error() throws IOException {
            if (!"application/json".equals(headers.get("content-type"))) {
                throw new AssertionError("error " + status + " without a JSON body: " + headers + " " + body);
            }
            JsonNode e = json().get("error");
            if (e == null || !e.path("message").isTextual() || e.path("message").asText().isBlank() || !e.has("type")
                    || !e.has("param") || !e.has("code")) {
                throw new AssertionError("not an OpenAI error object: " + body);
            }
            return e;
        }
    }

    final Socket socket;
    private final InputStream in;

    RawHttp(InetSocketAddress server) throws IOException {
        socket = new Socket();
        socket.connect(server, 10_000);
        socket.setSoTimeout((int) TestStack.TIMEOUT.toMillis());
        in = socket.getInputStream();
    }

    RawHttp send(String ascii) throws IOException {
        return send(ascii.getBytes(StandardCharsets.UTF_8));
    }

    RawHttp send(byte[] bytes) throws IOException {
        socket.getOutputStream().write(bytes);
        socket.getOutputStream().flush();
        return this;
    }

    /** A POST with a JSON body, as a string to send (so tests can concatenate several). */
    static String post(String path, String json) {
        return "POST " + path + " HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: "
                + json.getBytes(StandardCharsets.UTF_8).length + "\r\n\r\n" + json;
    }

    static String get(String path) {
        return "GET " + path + " HTTP/1.1\r\nHost: t\r\n\r\n";
    }

    /** Reads the next response, skipping interim 1xx ones. */
    Response read() throws IOException {
        while (true) {
            String status = line();
            if (status == null) {
                throw new IOException("connection closed before a response");
            }
            int code = Integer.parseInt(status.split(" ")[1]);
            Map<String, String> headers = new LinkedHashMap<>();
            for (String h = line(); h != null && !h.isEmpty(); h = line()) {
                int c = h.indexOf(':');
                headers.put(h.substring(0, c).trim().toLowerCase(Locale.ROOT), h.substring(c + 1).trim());
            }
            if (code >= 100 && code < 200) {
                continue;
            }
            String body;
            if (headers.containsKey("content-length")) {
                body = new String(in.readNBytes(Integer.parseInt(headers.get("content-length"))), StandardCharsets.UTF_8);
            } else if ("chunked".equalsIgnoreCase(headers.get("transfer-encoding"))) {
                ByteArrayOutputStream b = new ByteArrayOutputStream();
                for (int n = Integer.parseInt(line().trim(), 16); n > 0; n = Integer.parseInt(line().trim(), 16)) {
                    b.write(in.readNBytes(n));
                    line();
                }
                line();
                body = b.toString(StandardCharsets.UTF_8);
            } else {
                body = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            }
            return new Response(code, headers, body);
        }
    }

    /** True when the server closed the connection (end of stream or reset) within the socket timeout. */
    boolean closedByServer() throws IOException {
        try {
            return in.read() == -1;
        } catch (SocketTimeoutException e) {
            return false;
        } catch (IOException e) {
            return true; // reset
        }
    }

    private String line() throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        for (int c = in.read(); c != -1; c = in.read()) {
            if (c == '\n') {
                String s = b.toString(StandardCharsets.ISO_8859_1);
                return s.endsWith("\r") ? s.substring(0, s.length() - 1) : s;
            }
            b.write(c);
        }
        return b.size() == 0 ? null : b.toString(StandardCharsets.ISO_8859_1);
    }

    @Override
    public void close() throws IOException {
        socket.close();
    }
}
