// Command brindle-cni is Brindle's CNI plugin (spec 1.1: ADD, DEL, CHECK,
// GC, STATUS, VERSION). It is thin: addresses and endpoints come from the
// local agent over its unix socket (package cni/plugin, docs/cni.md).
package main

import "github.com/brindle-net/brindle/cni/plugin"

func main() {
	plugin.Main("brindle-cni: Brindle's CNI plugin (pure L3 veth, addresses and policy from the brindle agent)")
}
