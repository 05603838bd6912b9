package ctl

import (
	"io"
	"log/slog"

	"github.com/spf13/cobra"
)

// Streams are where a command reads input and writes output, so tests can
// run commands in-process.
type Streams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// Options are the global flags shared by every brindlectl command.
type Options struct {
	Streams Streams
	Logger  *slog.Logger
	Getenv  func(string) string // BRINDLE_ETCD_* lookup (os.Getenv in cmd/); nil: no environment
}

// NewRootCommand builds the brindlectl command tree.
func NewRootCommand(opts *Options) *cobra.Command {
	root := &cobra.Command{
		Use:           "brindlectl",
		Short:         "Manage a Brindle network: resources, policy, IPAM and nodes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(opts.Streams.In)
	root.SetOut(opts.Streams.Out)
	root.SetErr(opts.Streams.ErrOut)
	addResourceCommands(root, opts)
	addPolicyCommands(root, opts)
	addIPAMCommands(root, opts)
	addNodeCommands(root, opts)
	return root
}
