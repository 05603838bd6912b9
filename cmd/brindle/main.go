// Command brindle is the Brindle host binary: one subcommand per role
// (datastore, and later node, lab, ...). Each subcommand lives in its own
// file as newXxxCommand(logger) and is registered here.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := newRootCommand(logger).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// newRootCommand builds the command tree. Add a subcommand with one line.
func newRootCommand(logger *slog.Logger) *cobra.Command {
	root := &cobra.Command{
		Use:           "brindle",
		Short:         "Brindle: a pure layer-3 network with label-selector policy",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newDatastoreCommand(logger))
	root.AddCommand(newNodeCommand(logger))
	root.AddCommand(newKubeControllersCommand(logger))
	root.AddCommand(newLabCommand(logger))
	return root
}
