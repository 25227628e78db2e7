package io.epserve.server;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;

/**
 * A streaming request over a plain socket, so a test controls exactly when the client goes away
 * (closing the socket is a disconnect, whatever an HTTP client library would do).
 */
final class RawStream implements AutoCloseable {
    private final Socket socket;
    private final BufferedReader in;
    final int status;

    RawStream(InetSocketAddress server, String path, String json) throws IOException {
        socket = new Socket();
        socket.connect(server, 10_000);
        socket.setSoTimeout((int) TestStack.TIMEOUT.toMillis());
        byte[] body = json.getBytes(StandardCharsets.UTF_8);
        OutputStream out = socket.getOutputStream();
        out.write(("POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: "
                + body.length + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
        out.write(body);
        out.flush();
        in = new BufferedReader(new InputStreamReader(socket.getInputStream(), StandardCharsets.UTF_8));
        String statusLine = in.readLine();
        if (statusLine == null) {
            throw new IOException("connection closed before the response");
        }
        status = Integer.parseInt(statusLine.split(" ")[1]);
        for (String h = in.readLine(); h != null && !h.isEmpty(); h = in.readLine()) {
            // headers
        }
    }

    /** The next SSE data line's payload (chunk-size lines and blank lines skipped). */
    String nextData() throws IOException {
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            if (line.startsWith("data: ")) {
                return line.substring("data: ".length());
            }
        }
        throw new IOException("stream ended");
    }

    @Override
    public void close() throws IOException {
        socket.close();
    }
}
