package io.epserve.model.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * The GPT-2 "byte-level" alphabet: every byte 0..255 is shown as one printable Unicode char so
 * that BPE can work on strings without ever meeting whitespace or control chars.
 *
 * <p>Bytes that are already printable Latin-1 ({@code ! .. ~}, {@code ¡ .. ¬}, {@code ® .. ÿ})
 * stand for themselves; the other 68 bytes (controls, space, DEL, NBSP, soft hyphen) are given
 * the chars U+0100, U+0101, ... in byte order. So space (0x20) is {@code Ġ} (U+0120) and
 * newline (0x0A) is {@code Ċ} (U+010A). This is the table of OpenAI's GPT-2 {@code encoder.py}
 * ({@code bytes_to_unicode}) that Hugging Face's ByteLevel pre-tokenizer and decoder use.
 */
final class ByteLevel {
    /** GPT-2's pre-tokenization regex, used by ByteLevel when {@code use_regex} is true. */
    static final String GPT2_PATTERN =
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

    private static final char[] BYTE_TO_CHAR = new char[256];
    /** Indexed by char value (all mapped chars are below U+0144); -1 where not a byte char. */
    private static final short[] CHAR_TO_BYTE = new short[0x144];

    static {
        Arrays.fill(CHAR_TO_BYTE, (short) -1);
        int next = 256;
        for (int b = 0; b < 256; b++) {
            boolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            char c = printable ? (char) b : (char) next++;
            BYTE_TO_CHAR[b] = c;
            CHAR_TO_BYTE[c] = (short) b;
        }
    }

    private ByteLevel() {}

    /** The byte-level char standing for byte {@code b} (0..255). */
    static char charOf(int b) {
        return BYTE_TO_CHAR[b & 0xFF];
    }

    /** The byte a byte-level char stands for, or -1 if {@code c} is not in the alphabet. */
    static int byteOf(char c) {
        return c < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[c] : -1;
    }

    /** UTF-8 bytes of {@code text}, each shown as its byte-level char. */
    static String encode(String text) {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        char[] out = new char[bytes.length];
        for (int i = 0; i < bytes.length; i++) {
            out[i] = BYTE_TO_CHAR[bytes[i] & 0xFF];
        }
        return new String(out);
    }

    /**
     * The bytes a byte-level token stands for; a token with any char outside the alphabet (an
     * added token such as {@code <｜begin▁of▁sentence｜>}) is taken as its own UTF-8 text, as
     * the Hugging Face ByteLevel decoder does.
     */
    static byte[] decode(String token) {
        byte[] out = new byte[token.length()];
        for (int i = 0; i < token.length(); i++) {
            int b = byteOf(token.charAt(i));
            if (b < 0) {
                return token.getBytes(StandardCharsets.UTF_8);
            }
            out[i] = (byte) b;
        }
        return out;
    }
}
