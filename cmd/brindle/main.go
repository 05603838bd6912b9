// Command brindle is the Brindle host binary: one subcommand per role
// (node, datastore, lab). Each subcommand lives in its own file as
// newXxxCommand(logger) and is registered here. The Kubernetes controllers
// are a binary of their own (cmd/brindle-kube-controllers): the typed
// Kubernetes clients they link would weigh on every host's agent.
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
	root.AddCommand(newLabCommand(logger))
	return root
}
