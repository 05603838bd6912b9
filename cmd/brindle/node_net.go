package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/brindle-net/brindle/cni"
	"github.com/brindle-net/brindle/dataplane/nat"
	"github.com/brindle-net/brindle/dataplane/vxlan"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/ipam"
)

// Environment of the overlay and NAT daemon (docs/vxlan.md). Felix's
// names (FELIX_VXLANVNI, ...) are accepted too.
const (
	envNodeNet     = "BRINDLE_NODE_NET" // "off": no VXLAN, no NAT outgoing
	envVXLANDevice = "BRINDLE_VXLAN_DEVICE"
	envVXLANVNI    = "BRINDLE_VXLAN_VNI"
	envVXLANPort   = "BRINDLE_VXLAN_PORT"
	envVXLANMTU    = "BRINDLE_VXLAN_MTU"
)

// startNodeNet starts the VXLAN and NAT-outgoing daemon of `brindle node`
// in the background (in namespace netnsPath when set) and returns the
// function that stops it and waits for it.
func startNodeNet(ctx context.Context, client *datastore.Client, hostname, netnsPath string, logger *slog.Logger) (func(), error) {
	if strings.EqualFold(os.Getenv(envNodeNet), "off") {
		logger.Info("VXLAN and NAT outgoing are off", "env", envNodeNet)
		return func() {}, nil
	}
	// Step 1: settings from the environment.
	cfg := vxlan.Config{Device: os.Getenv(envVXLANDevice), Netns: netnsPath, Logger: logger}
	for _, f := range []struct {
		env, felix string
		dst        *int
	}{{envVXLANVNI, "FELIX_VXLANVNI", &cfg.VNI}, {envVXLANPort, "FELIX_VXLANPORT", &cfg.Port}, {envVXLANMTU, "FELIX_VXLANMTU", &cfg.MTU}} {
		v := firstNonEmpty(os.Getenv(f.env), os.Getenv(f.felix))
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: not a number", f.env, v)
		}
		*f.dst = n
	}

	// Step 2: the two dataplanes and the VTEP allocator.
	vx, err := vxlan.New(cfg)
	if err != nil {
		return nil, err
	}
	nt, err := nat.New(nat.Config{Netns: netnsPath, Logger: logger})
	if err != nil {
		vx.Close()
		return nil, err
	}
	ip, err := ipam.New(ipam.NewEtcdStore(client), ipam.Config{Node: hostname, Source: cni.NewDatastoreSource(client), Logger: logger})
	if err != nil {
		vx.Close()
		nt.Close()
		return nil, err
	}

	// Step 3: the daemon.
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := vxlan.RunDaemon(ctx, vxlan.DaemonConfig{Hostname: hostname, Datastore: client, IPAM: ip,
			VXLAN: vx, NAT: nt, Logger: logger})
		if err != nil {
			logger.Error("VXLAN and NAT daemon stopped", "err", err)
		}
	}()
	return func() {
		cancel()
		<-done
		vx.Close()
		nt.Close()
	}, nil
}
