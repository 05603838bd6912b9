package ctl_test

import (
	"io"
	"strings"
	"testing"

	brctl "github.com/brindle-net/brindle/ctl"
	"github.com/google/go-cmp/cmp"
)

// TestConnectionConfigPrecedence resolves the connection settings in
// process: flags beat the environment (looked up through Options.Getenv),
// which beats the config file.
func TestConnectionConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfgFile := writeFile(t, dir, "brindlebrctl.yaml", `apiVersion: projectcalico.org/v3
kind: BrindleConfig
spec:
  etcdEndpoints: [http://file-1:2379, http://file-2:2379]
  etcdCACertFile: /file/ca.pem
  etcdUsername: file-user
  etcdPassword: file-pass
`)
	type settings struct {
		Endpoints          []string
		CA, Username, Pass string
	}
	tests := []struct {
		name  string
		env   map[string]string
		flags []string
		want  settings
	}{{
		name: "config file only",
		want: settings{[]string{"http://file-1:2379", "http://file-2:2379"}, "/file/ca.pem", "file-user", "file-pass"},
	}, {
		name: "environment over file",
		env:  map[string]string{brctl.EnvEndpoints: "http://env:2379", brctl.EnvUsername: "env-user"},
		want: settings{[]string{"http://env:2379"}, "/file/ca.pem", "env-user", "file-pass"},
	}, {
		name:  "flags over environment",
		env:   map[string]string{brctl.EnvEndpoints: "http://env:2379", brctl.EnvCA: "/env/ca.pem"},
		flags: []string{"--etcd-endpoints", "http://flag-1:2379,http://flag-2:2379"},
		want:  settings{[]string{"http://flag-1:2379", "http://flag-2:2379"}, "/env/ca.pem", "file-user", "file-pass"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := &brctl.Options{
				Streams: brctl.Streams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard},
				Getenv:  func(k string) string { return tc.env[k] },
			}
			cmd, _, err := brctl.NewRootCommand(opts).Find([]string{"get"})
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.ParseFlags(append([]string{"--config", cfgFile}, tc.flags...)); err != nil {
				t.Fatal(err)
			}
			cfg, err := opts.ConnectionConfig(cmd)
			if err != nil {
				t.Fatal(err)
			}
			got := settings{cfg.Endpoints, cfg.CAFile, cfg.Username, cfg.Password}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("settings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConnectionConfigWithoutGetenv: a nil Getenv means the environment is
// not consulted at all.
func TestConnectionConfigWithoutGetenv(t *testing.T) {
	t.Setenv(brctl.EnvEndpoints, "http://process-env:2379")
	opts := &brctl.Options{Streams: brctl.Streams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard}}
	cmd, _, err := brctl.NewRootCommand(opts).Find([]string{"get"})
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := writeFile(t, t.TempDir(), "empty.yaml", "apiVersion: projectcalico.org/v3\nkind: BrindleConfig\nspec: {}\n")
	if err := cmd.ParseFlags([]string{"--config", cfgFile}); err != nil {
		t.Fatal(err)
	}
	cfg, err := opts.ConnectionConfig(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"http://127.0.0.1:2379"}, cfg.Endpoints); diff != "" {
		t.Errorf("endpoints with no Getenv (-want +got):\n%s", diff)
	}
}
