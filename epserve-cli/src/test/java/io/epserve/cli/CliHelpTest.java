package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;
import picocli.CommandLine.Model.OptionSpec;

/**
 * The help of every command: picocli wraps it (descriptions are whole paragraphs, never lines
 * broken by hand, which picocli would wrap a second time) and it fits 80 columns; an unknown
 * command is an error.
 */
class CliHelpTest {
    private static List<CommandLine> allCommands() {
        List<CommandLine> out = new ArrayList<>();
        collect(new CommandLine(new Main()), out);
        return out;
    }

    private static void collect(CommandLine cl, List<CommandLine> out) {
        out.add(cl);
        cl.getSubcommands().values().forEach(sub -> collect(sub, out));
    }

    /** A paragraph ends a sentence (or a list or a code sample); a hand-broken line ends mid-sentence. */
    private static void assertParagraphs(String where, String[] description) {
        for (String p : description) {
            if (!p.isEmpty()) {
                assertThat(p.replace("%n", "").strip()).as("%s: a description paragraph that ends mid-sentence (a hand line break?)", where)
                        .matches("(?s).*[.:)}\\]]$");
            }
        }
    }

    @Test
    void everyHelpFits80ColumnsAndIsWrappedByPicocli() {
        List<CommandLine> commands = allCommands();
        assertThat(commands.size()).isGreaterThan(8);
        for (CommandLine cl : commands) {
            String name = cl.getCommandSpec().qualifiedName();
            cl.getCommandSpec().usageMessage().width(80);
            assertParagraphs(name, cl.getCommandSpec().usageMessage().description());
            for (OptionSpec o : cl.getCommandSpec().options()) {
                assertParagraphs(name + " " + o.longestName(), o.description());
            }
            for (String line : cl.getUsageMessage(CommandLine.Help.Ansi.OFF).split("\\R")) {
                assertThat(line.length()).as("%s --help line: %s", name, line).isLessThanOrEqualTo(80);
            }
        }
    }

    @Test
    void unknownCommandIsAnError() {
        for (String[] args : List.of(new String[] {"frobnicate", "--help"}, new String[] {"frobnicate"}, new String[] {"sreve", "--port", "1"})) {
            CliRunner.Outcome o = CliRunner.inProcess(args);
            assertThat(o.exitCode()).as(String.join(" ", args)).isEqualTo(2);
            assertThat(o.err()).contains("unknown command '" + args[0] + "'").contains("serve");
            assertThat(o.out()).doesNotContain("Usage:");
        }
        assertThat(CliRunner.inProcess("--version").exitCode()).isZero();
        assertThat(CliRunner.inProcess("help", "serve").out()).contains("Usage: epserve serve");
    }
}
