package io.epserve.model.tokenizer;

import static io.epserve.model.tokenizer.TestTokenizers.load;
import static io.epserve.model.tokenizer.TestTokenizers.stream;
import static org.assertj.core.api.Assertions.assertThat;

import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class StreamingDecoderTest {

    private static int complete(int... bytes) {
        byte[] b = new byte[bytes.length];
        for (int i = 0; i < bytes.length; i++) {
            b[i] = (byte) bytes[i];
        }
        return StreamingDecoder.completeLength(b, b.length);
    }

    @Test
    void completeLengthHoldsBackOnlyAnUnfinishedChar() {
        assertThat(complete()).isZero();
        assertThat(complete('a', 'b')).isEqualTo(2);
        assertThat(complete('a', 0xC3)).isEqualTo(1);
        assertThat(complete('a', 0xC3, 0xA9)).isEqualTo(3);
        assertThat(complete(0xF0, 0x9F, 0x99)).isZero();
        assertThat(complete(0xF0, 0x9F, 0x99, 0x82)).isEqualTo(4);
        assertThat(complete('a', 0xE2, 0x82)).isEqualTo(1);
        // Bytes that can never complete are not held: a stray continuation, an invalid lead.
        assertThat(complete(0x82)).isEqualTo(1);
        assertThat(complete('a', 0xFF)).isEqualTo(2);
        assertThat(complete(0xC0)).isEqualTo(1);
    }

    @Test
    void streamedTextEqualsWholeDecodeForRandomTokens() {
        // Random ids lean on byte tokens so that chars are split and sometimes broken.
        for (String name : new String[] {"gpt2-mini", "llama-mini"}) {
            Tokenizer tok = load(name);
            SplittableRandom r = new SplittableRandom(42);
            for (int trial = 0; trial < 2_000; trial++) {
                int[] ids = new int[r.nextInt(0, 12)];
                for (int i = 0; i < ids.length; i++) {
                    ids[i] = r.nextInt(4) == 0 ? r.nextInt(tok.vocabSize()) : byteToken(tok, name, r);
                }
                for (boolean skip : new boolean[] {true, false}) {
                    assertThat(stream(tok.streamingDecoder(skip), ids)).as("%s %s", name, Arrays.toString(ids))
                            .isEqualTo(tok.decode(ids, skip));
                }
            }
        }
    }

    /** A token for a UTF-8 lead or continuation byte, or ASCII. */
    private static int byteToken(Tokenizer tok, String name, SplittableRandom r) {
        int[] interesting = {'a', ' ', 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x99, 0x82, 0xFF};
        int b = interesting[r.nextInt(interesting.length)];
        return name.equals("llama-mini") ? 3 + b : b;
    }

    @Test
    void resetStartsANewSequence() {
        Tokenizer tok = load("llama-mini");
        StreamingDecoder d = tok.streamingDecoder();
        assertThat(d.push(273)).isEqualTo("hello");
        assertThat(d.push(3 + 0xE2)).isEmpty();
        d.reset();
        assertThat(d.push(278)).isEqualTo("world"); // leading space stripped again, pending byte gone
    }
}
