package ctl

import "github.com/spf13/cobra"

// addResourceCommands adds apply, create, replace, delete, get, label and
// validate.
func addResourceCommands(root *cobra.Command, opts *Options) {}
