package ctl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/brindle-net/brindle/datastore"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// DefaultConfigFile is read for connection settings when --config is not
// given; it may be missing.
const DefaultConfigFile = "/etc/brindle/brindlectl.yaml"

// Connection flags, registered on the root command so every subcommand has
// them. Connect reads them back from the command being run.
const (
	flagEndpoints = "etcd-endpoints"
	flagCA        = "etcd-ca"
	flagCert      = "etcd-cert"
	flagKey       = "etcd-key"
	flagUsername  = "etcd-username"
	flagPassword  = "etcd-password"
	flagConfig    = "config"
)

// Environment variables, between the flags and the config file in
// precedence.
const (
	EnvEndpoints = "BRINDLE_ETCD_ENDPOINTS"
	EnvCA        = "BRINDLE_ETCD_CA_FILE"
	EnvCert      = "BRINDLE_ETCD_CERT_FILE"
	EnvKey       = "BRINDLE_ETCD_KEY_FILE"
	EnvUsername  = "BRINDLE_ETCD_USERNAME"
	EnvPassword  = "BRINDLE_ETCD_PASSWORD"
)

// addConnectionFlags registers the connection flags on root as persistent
// flags.
func addConnectionFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.String(flagEndpoints, "", "comma-separated etcd client URLs (default "+datastore.DefaultEndpoint+"; env "+EnvEndpoints+")")
	f.String(flagCA, "", "CA certificate file for etcd TLS (env "+EnvCA+")")
	f.String(flagCert, "", "client certificate file for etcd TLS (env "+EnvCert+")")
	f.String(flagKey, "", "client key file for etcd TLS (env "+EnvKey+")")
	f.String(flagUsername, "", "etcd username (env "+EnvUsername+")")
	f.String(flagPassword, "", "etcd password (env "+EnvPassword+")")
	f.String(flagConfig, "", "connection config file (default "+DefaultConfigFile+", if present)")
}

// ConfigFile is the brindlectl connection file:
//
//	apiVersion: projectcalico.org/v3
//	kind: BrindleConfig
//	spec:
//	  etcdEndpoints: https://10.0.0.1:2379,https://10.0.0.2:2379
//	  etcdCACertFile: /etc/brindle/ca.pem
//	  etcdCertFile: /etc/brindle/client.pem
//	  etcdKeyFile: /etc/brindle/client-key.pem
//	  etcdUsername: brindle
//	  etcdPassword: secret
//
// The field names are calicoctl's (CalicoAPIConfig); etcdEndpoints may also
// be a YAML list.
type ConfigFile struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Spec       ConfigFileSpec `json:"spec"`
}

// ConfigFileSpec holds the connection settings of a ConfigFile.
type ConfigFileSpec struct {
	EtcdEndpoints  endpointList `json:"etcdEndpoints,omitempty"`
	EtcdCACertFile string       `json:"etcdCACertFile,omitempty"`
	EtcdCertFile   string       `json:"etcdCertFile,omitempty"`
	EtcdKeyFile    string       `json:"etcdKeyFile,omitempty"`
	EtcdUsername   string       `json:"etcdUsername,omitempty"`
	EtcdPassword   string       `json:"etcdPassword,omitempty"`
}

// endpointList accepts "a,b" or ["a", "b"].
type endpointList []string

func (e *endpointList) UnmarshalJSON(b []byte) error {
	var s string
	if err := yaml.Unmarshal(b, &s); err == nil {
		*e = splitList(s)
		return nil
	}
	var l []string
	if err := yaml.Unmarshal(b, &l); err != nil {
		return errors.New("etcdEndpoints: want a comma-separated string or a list of URLs")
	}
	*e = l
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// readConfigFile loads path. A missing file is an error only if the user
// named it.
func readConfigFile(path string, explicit bool) (*ConfigFileSpec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return &ConfigFileSpec{}, nil
		}
		return nil, fmt.Errorf("config file: %w", err)
	}
	var cf ConfigFile
	if err := yaml.UnmarshalStrict(data, &cf); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if cf.Kind != "BrindleConfig" {
		return nil, fmt.Errorf("config file %s: kind: want BrindleConfig, got %q", path, cf.Kind)
	}
	return &cf.Spec, nil
}

// ConnectionConfig works out the datastore configuration for cmd from, in
// order of precedence, its flags, the environment (the BRINDLE_ETCD_*
// variables, looked up through Options.Getenv; with a nil Getenv the
// environment is not consulted) and the config file.
func (o *Options) ConnectionConfig(cmd *cobra.Command) (datastore.Config, error) {
	flags := cmd.Flags()
	get := func(name string) string {
		if f := flags.Lookup(name); f != nil {
			return f.Value.String()
		}
		return ""
	}
	cfgPath, explicit := get(flagConfig), true
	if cfgPath == "" {
		cfgPath, explicit = DefaultConfigFile, false
	}
	file, err := readConfigFile(cfgPath, explicit)
	if err != nil {
		return datastore.Config{}, err
	}
	pick := func(flag, env, fromFile string) string {
		if v := get(flag); v != "" {
			return v
		}
		if o.Getenv != nil {
			if v := o.Getenv(env); v != "" {
				return v
			}
		}
		return fromFile
	}
	cfg := datastore.Config{
		Endpoints: splitList(pick(flagEndpoints, EnvEndpoints, strings.Join(file.EtcdEndpoints, ","))),
		CAFile:    pick(flagCA, EnvCA, file.EtcdCACertFile),
		CertFile:  pick(flagCert, EnvCert, file.EtcdCertFile),
		KeyFile:   pick(flagKey, EnvKey, file.EtcdKeyFile),
		Username:  pick(flagUsername, EnvUsername, file.EtcdUsername),
		Password:  pick(flagPassword, EnvPassword, file.EtcdPassword),
		Logger:    o.Logger,
	}
	if len(cfg.Endpoints) == 0 {
		cfg.Endpoints = []string{datastore.DefaultEndpoint}
	}
	if err := cfg.Validate(); err != nil {
		return datastore.Config{}, err
	}
	return cfg, nil
}

// Connect opens a datastore client for cmd (see ConnectionConfig). Any
// brindlectl command may call it; the caller closes the client.
func (o *Options) Connect(cmd *cobra.Command) (*datastore.Client, error) {
	cfg, err := o.ConnectionConfig(cmd)
	if err != nil {
		return nil, err
	}
	return datastore.New(cmd.Context(), cfg)
}
