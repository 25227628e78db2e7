package io.epserve.cli;

import io.epserve.format.CheckpointException;
import io.epserve.model.tokenizer.TokenizerException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code epserve} command line. */
@Command(name = "epserve", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = {"Serve Mixture-of-Experts language models with expert parallelism.",
                "",
                "Without --model, commands use the built-in demo model: a deterministic random Mixtral-shaped "
                + "MoE (640M parameters, BF16) written in Hugging Face format into the cache folder "
                + "($EPSERVE_CACHE, else ~/.cache/epserve) on first use. Its text is noise; it exists so that "
                + "everything runs out of the box."},
        subcommands = {ServeCommand.class, GenerateCommand.class, LogitsCommand.class, WorkerCommand.class, ClusterCommand.class,
                LoadgenCommand.class, BenchCommand.class, PlanCommand.class, AotTrainCommand.class, CommandLine.HelpCommand.class})
public final class Main implements Runnable {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    public static void main(String[] args) {
        System.exit(run(args));
    }

    /** Runs the CLI and returns its exit code (tests call this). */
    public static int run(String... args) {
        CommandLine cl = new CommandLine(new Main());
        cl.setExecutionExceptionHandler(Main::handle);
        // picocli lets a help option win over an unmatched word, so `epserve simulate --help` would print the
        // top-level usage and succeed: an unknown command is refused before picocli sees it.
        if (args.length > 0 && !args[0].startsWith("-") && !cl.getSubcommands().containsKey(args[0])) {
            PrintWriter err = cl.getErr();
            err.println("epserve: error: unknown command '" + args[0] + "'; the commands are: "
                    + String.join(", ", cl.getSubcommands().keySet()) + " (epserve --help describes them)");
            err.flush();
            return 2;
        }
        return cl.execute(args);
    }

    /** Expected failures get one line and exit code 2; bugs one line and exit code 1 (EPSERVE_DEBUG=1 for the trace). */
    private static int handle(Exception e, CommandLine cl, CommandLine.ParseResult parsed) {
        PrintWriter err = cl.getErr();
        if (e instanceof CheckpointException || e instanceof TokenizerException || e instanceof IllegalArgumentException
                || e instanceof UncheckedIOException || e instanceof UsageError) {
            err.println("epserve: error: " + e.getMessage());
            err.flush();
            return 2;
        }
        err.println("epserve: internal error: " + e);
        if (System.getenv("EPSERVE_DEBUG") != null) {
            e.printStackTrace(err);
        } else {
            err.println("epserve: set EPSERVE_DEBUG=1 to see the stack trace");
        }
        err.flush();
        return 1;
    }

    /** A bad combination of options that picocli cannot check by itself. */
    static final class UsageError extends RuntimeException {
        UsageError(String message) {
            super(message);
        }
    }

    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = Main.class.getPackage().getImplementationVersion();
            return new String[] {"epserve " + (v == null ? "0.1.0-SNAPSHOT" : v) + " (Java " + Runtime.version() + ")"};
        }
    }
}
