package ctl

import "github.com/spf13/cobra"

// addPolicyCommands adds "policy check".
func addPolicyCommands(root *cobra.Command, opts *Options) {}
