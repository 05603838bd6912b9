package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/brindle-net/brindle/agent"
	"github.com/brindle-net/brindle/cni"
	"github.com/brindle-net/brindle/cni/wire"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/ipam"
	"github.com/spf13/cobra"
)

// Defaults of `brindle node`.
const (
	DefaultNodeSocket     = "/var/run/brindle/agent.sock"
	DefaultNodeConfigFile = "/etc/brindle/node.cfg"
)

// nodeFlags are the flags of `brindle node`.
type nodeFlags struct {
	hostname   string
	endpoints  string
	caFile     string
	certFile   string
	keyFile    string
	socket     string
	configFile string
	netns      string
	dump       bool
	dumpWait   time.Duration
	params     map[string]string
	routing    nodeRoutingFlags
	kubeconfig string
}

// newNodeCommand is `brindle node`: the per-host agent. It logs through a
// handler of its own whose level follows LogSeverityScreen (changed live).
func newNodeCommand(_ *slog.Logger) *cobra.Command {
	level := new(slog.LevelVar)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	var fl nodeFlags
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run the host agent: datastore → policy and routes in the kernel",
		Long: `Run the per-host agent. It watches the datastore, computes this host's
policy dataplane, and programs nftables and workload routes once the
datastore is in sync. Parameters come, highest first, from --set flags,
BRINDLE_<NAME> / FELIX_<NAME> environment variables, the config file
(INI, [global] section), FelixConfiguration node.<hostname>, then
FelixConfiguration default. A datastore change to a parameter that needs a
restart (InterfacePrefix, Health*, PrometheusMetrics*) makes it exit with
status 129 for its supervisor to restart it.

With --dump it prints the ruleset and routes it would program now, and
exits without touching the kernel.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return runNode(ctx, fl, logger, level, cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.hostname, "hostname", "", "this node's name (env BRINDLE_HOSTNAME; default: the kernel hostname)")
	f.StringVar(&fl.endpoints, "etcd-endpoints", "", "comma-separated etcd client URLs (env BRINDLE_ETCD_ENDPOINTS; default "+datastore.DefaultEndpoint+")")
	f.StringVar(&fl.caFile, "etcd-ca", "", "CA certificate for etcd TLS (env BRINDLE_ETCD_CA_FILE)")
	f.StringVar(&fl.certFile, "etcd-cert", "", "client certificate for etcd TLS (env BRINDLE_ETCD_CERT_FILE)")
	f.StringVar(&fl.keyFile, "etcd-key", "", "client key for etcd TLS (env BRINDLE_ETCD_KEY_FILE)")
	f.StringVar(&fl.socket, "socket", DefaultNodeSocket, "unix socket of the local API (empty: none)")
	f.StringVar(&fl.configFile, "config-file", DefaultNodeConfigFile, "parameter file (INI, [global]; empty: none); a missing default file is fine")
	f.StringVar(&fl.netns, "netns", "", "program this network namespace (path) instead of the agent's own")
	f.BoolVar(&fl.dump, "dump", false, "print the ruleset and routes this host would program now, then exit")
	f.DurationVar(&fl.dumpWait, "dump-timeout", 30*time.Second, "with --dump: how long to wait for the datastore")
	f.StringToStringVar(&fl.params, "set", nil, "parameter overrides, e.g. --set InterfacePrefix=tap,LogSeverityScreen=Debug")
	addNodeRoutingFlags(f, &fl.routing) // --ip, --as, --no-bgp, --bgp-hold-time, --bgp-restart-time (node_routing.go)
	f.StringVar(&fl.kubeconfig, "kubeconfig", "", `kubeconfig (or "in-cluster") for the CNI service's pod lookups: labels and service account at ADD (env BRINDLE_KUBECONFIG; default: none)`)
	return cmd
}

// runNode wires the agent: connection settings, parameter layers, client,
// then Run or Dump.
func runNode(ctx context.Context, fl nodeFlags, logger *slog.Logger, level *slog.LevelVar, cmd *cobra.Command) error {
	// Step 1: local-only settings (never from the datastore).
	hostname := firstNonEmpty(fl.hostname, os.Getenv("BRINDLE_HOSTNAME"), os.Getenv("FELIX_FELIXHOSTNAME"))
	if hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("hostname: %w", err)
		}
		hostname = h
	}
	dsCfg := datastore.Config{
		CAFile:   firstNonEmpty(fl.caFile, os.Getenv("BRINDLE_ETCD_CA_FILE")),
		CertFile: firstNonEmpty(fl.certFile, os.Getenv("BRINDLE_ETCD_CERT_FILE")),
		KeyFile:  firstNonEmpty(fl.keyFile, os.Getenv("BRINDLE_ETCD_KEY_FILE")),
		Logger:   logger,
	}
	if eps := firstNonEmpty(fl.endpoints, os.Getenv("BRINDLE_ETCD_ENDPOINTS"), os.Getenv("FELIX_ETCDENDPOINTS")); eps != "" {
		for _, e := range strings.Split(eps, ",") {
			if e = strings.TrimSpace(e); e != "" {
				dsCfg.Endpoints = append(dsCfg.Endpoints, e)
			}
		}
	}

	// Step 2: parameter layers, highest first: flags, env, file.
	layers := []agent.Layer{{Name: "flags", Values: fl.params}, agent.EnvLayer(os.Environ())}
	data, err := os.ReadFile(fl.configFile)
	switch {
	case fl.configFile == "":
	case err == nil:
		l, err := agent.ParseConfigFile(fl.configFile, data)
		if err != nil {
			return err
		}
		layers = append(layers, l)
	case errors.Is(err, fs.ErrNotExist) && !cmd.Flags().Changed("config-file"):
	default:
		return fmt.Errorf("config file: %w", err)
	}

	// Step 3: the datastore client.
	client, err := datastore.New(ctx, dsCfg)
	if err != nil {
		return err
	}
	defer client.Close()

	// Step 4: dump, or run.
	if fl.dump {
		dctx, cancel := context.WithTimeout(ctx, fl.dumpWait)
		defer cancel()
		out, err := agent.Dump(dctx, agent.DumpConfig{Hostname: hostname, Datastore: client, LocalLayers: layers})
		if err != nil {
			return err
		}
		_, err = fmt.Fprint(cmd.OutOrStdout(), out)
		return err
	}
	stopNet, err := startNodeNet(ctx, client, hostname, fl.netns, logger) // VXLAN and NAT outgoing (node_net.go)
	if err != nil {
		return err
	}
	defer stopNet()
	var a *agent.Agent
	handlers := map[string]http.Handler{}
	if fl.socket != "" {
		podInfo, err := kubePodInfo(fl.kubeconfig) // pod labels and service account at ADD time (node_kube.go)
		if err != nil {
			return err
		}
		svc, err := newCNIService(client, hostname, fl.params, logger, func() *agent.Agent { return a }, podInfo)
		if err != nil {
			return err
		}
		handlers[wire.PathPrefix] = svc
	}
	stopRouting, err := startNodeRouting(ctx, fl, client, hostname, handlers, func() *agent.Agent { return a }, logger) // Node registration and BGP (node_routing.go)
	if err != nil {
		return err
	}
	defer stopRouting()
	a, err = agent.New(agent.Config{
		Hostname: hostname, Datastore: client, LocalLayers: layers, Netns: fl.netns,
		SocketPath: fl.socket, LocalHandlers: handlers, Logger: logger, LogLevel: level,
	})
	if err != nil {
		return err
	}
	err = a.Run(ctx)
	if errors.Is(err, agent.ErrRestart) {
		logger.Warn("exiting for a restart", "reason", err)
		os.Exit(exitRestart)
	}
	return err
}

// newCNIService builds the CNI service the agent serves on its local
// socket: the plugin's ADD is answered only once the agent has programmed
// the new endpoint's policy.
func newCNIService(client *datastore.Client, hostname string, params map[string]string, logger *slog.Logger, agentOf func() *agent.Agent, podInfo func(context.Context, string, string) (cni.PodInfo, error)) (*cni.Service, error) {
	ip, err := ipam.New(ipam.NewEtcdStore(client), ipam.Config{Node: hostname, Source: cni.NewDatastoreSource(client), Logger: logger})
	if err != nil {
		return nil, err
	}
	prefix := cni.DefaultInterfacePrefix
	for k, v := range params {
		if strings.EqualFold(k, "InterfacePrefix") && v != "" {
			prefix, _, _ = strings.Cut(v, ",")
		}
	}
	return cni.NewService(cni.ServiceConfig{
		Datastore: client, IPAM: ip, Node: hostname, InterfacePrefix: prefix, Logger: logger, PodInfo: podInfo,
		Ready: func(ctx context.Context, namespace, name string, revision int64) error {
			res := agentOf().WaitEndpoint(ctx, namespace, name, revision)
			if res.Ready {
				return nil
			}
			return fmt.Errorf("endpoint %s/%s not programmed: %s", namespace, name, res.Reason)
		},
		Status: func(context.Context) error {
			st := agentOf().Status()
			switch {
			case !st.InSync:
				return errors.New("agent not in sync with the datastore")
			case !st.Programmed:
				return errors.New("agent has not programmed the dataplane yet")
			}
			return nil
		},
	})
}

// exitRestart is the exit status after a restart-required change (Felix
// also exits non-zero so that its supervisor restarts it).
const exitRestart = 129

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
