package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/spf13/cobra"
)

// addResourceCommands adds apply, create, replace, delete, get, label and
// validate, and the connection flags every command shares.
func addResourceCommands(root *cobra.Command, opts *Options) {
	addConnectionFlags(root)
	root.AddCommand(
		newWriteCommand(opts, "apply", datastore.OpApply, "Create or update resources from files"),
		newWriteCommand(opts, "create", datastore.OpCreate, "Create resources from files; fails if one exists"),
		newWriteCommand(opts, "replace", datastore.OpReplace, "Replace existing resources from files; fails if one is missing"),
		newDeleteCommand(opts),
		newGetCommand(opts),
		newLabelCommand(opts),
		newValidateCommand(opts),
	)
}

func addFileFlags(cmd *cobra.Command, f *fileFlags) {
	cmd.Flags().StringArrayVarP(&f.files, "filename", "f", nil, "file, directory or - (stdin) holding the resources; repeatable")
	cmd.Flags().BoolVarP(&f.recursive, "recursive", "R", false, "read directories given with -f recursively")
	cmd.Flags().StringVarP(&f.namespace, "namespace", "n", "", "namespace of namespaced resources that name none (default \"default\")")
}

// newWriteCommand builds apply, create and replace.
func newWriteCommand(opts *Options, verb string, op datastore.Op, short string) *cobra.Command {
	f := &fileFlags{}
	cmd := &cobra.Command{
		Use:   verb + " -f FILE|DIR|-",
		Short: short,
		Long: short + `.

Every document of every file is decoded and validated before anything is
written: one bad document writes nothing. Documents may be
projectcalico.org/v3 resources, 2017 Calico v1 resources (converted to v3)
or Kubernetes networking.k8s.io/v1 NetworkPolicies (stored with their
translation, the NetworkPolicy knp.default.<name>).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := readInput(opts, f, true)
			if err != nil {
				return err
			}
			return writeBatch(cmd, opts, op, in)
		},
	}
	addFileFlags(cmd, f)
	return cmd
}

// writeBatch writes the input in one batch and prints one line per
// document.
func writeBatch(cmd *cobra.Command, opts *Options, op datastore.Op, in *input) error {
	c, err := opts.Connect(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	res, err := c.WriteBatch(cmd.Context(), op, in.objs)
	out := opts.Streams.Out
	if err != nil {
		var be *datastore.BatchError
		if !errors.As(err, &be) {
			return err
		}
		for _, r := range be.Written {
			fmt.Fprintf(out, "%s %s\n", resourceName(in.objs[r.Index]), r.Action)
		}
		msg := shortError(be.Err)
		if be.Doc >= 0 && be.Doc < len(in.objs) {
			msg = in.describe(be.Doc) + ": " + msg
		}
		if len(be.Written) > 0 {
			msg += fmt.Sprintf("\nerror: only the first %d of %d documents were written (listed above)", len(be.Written), len(in.objs))
		}
		return errors.New(msg)
	}
	for _, r := range res {
		fmt.Fprintf(out, "%s %s\n", resourceName(in.objs[r.Index]), r.Action)
	}
	return nil
}

func newDeleteCommand(opts *Options) *cobra.Command {
	f := &fileFlags{}
	var skipMissing bool
	cmd := &cobra.Command{
		Use:   "delete (-f FILE|DIR|- | KIND NAME...)",
		Short: "Delete resources named in files or on the command line",
		RunE: func(cmd *cobra.Command, args []string) error {
			var in *input
			var err error
			switch {
			case len(f.files) > 0 && len(args) > 0:
				return errors.New("give either -f or KIND NAME..., not both")
			case len(f.files) > 0:
				in, err = readInput(opts, f, false)
			case len(args) >= 2:
				in, err = namedObjects(args[0], args[1:], f.namespace)
			default:
				return errors.New("give -f FILE or KIND NAME...")
			}
			if err != nil {
				return err
			}
			if skipMissing {
				return deleteEach(cmd, opts, in)
			}
			return writeBatch(cmd, opts, datastore.OpDelete, in)
		},
	}
	addFileFlags(cmd, f)
	cmd.Flags().BoolVarP(&skipMissing, "skip-not-exists", "s", false, "ignore resources that do not exist (deletes one by one)")
	return cmd
}

// namedObjects makes empty objects of a kind for KIND NAME... arguments.
func namedObjects(kindName string, names []string, namespace string) (*input, error) {
	k, err := lookupKind(kindName)
	if err != nil {
		return nil, err
	}
	in := &input{named: true}
	for i, n := range names {
		o := k.New()
		o.SetName(n)
		if k.Namespaced {
			o.SetNamespace(defaultNamespace(namespace))
		}
		in.objs = append(in.objs, o)
		in.sources = append(in.sources, source{index: i})
	}
	return in, nil
}

func defaultNamespace(ns string) string {
	if ns == "" {
		return "default"
	}
	return ns
}

// deleteEach deletes one by one, skipping missing resources.
func deleteEach(cmd *cobra.Command, opts *Options, in *input) error {
	c, err := opts.Connect(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	for i, o := range in.objs {
		_, err := c.WriteBatch(cmd.Context(), datastore.OpDelete, []api.Object{o})
		switch {
		case errors.Is(err, datastore.ErrNotFound):
			fmt.Fprintf(opts.Streams.Out, "%s not found (skipped)\n", resourceName(o))
		case err != nil:
			var be *datastore.BatchError
			if errors.As(err, &be) {
				err = be.Err
			}
			return fmt.Errorf("%s: %s", in.describe(i), shortError(err))
		default:
			fmt.Fprintf(opts.Streams.Out, "%s deleted\n", resourceName(o))
		}
	}
	return nil
}

func lookupKind(name string) (api.KindInfo, error) {
	k, ok := api.LookupKind(name)
	if !ok {
		var names []string
		for _, k := range api.Kinds() {
			names = append(names, k.Plural)
		}
		return api.KindInfo{}, fmt.Errorf("unknown resource kind %q; known kinds: %s", name, strings.Join(names, ", "))
	}
	return k, nil
}

func newGetCommand(opts *Options) *cobra.Command {
	var namespace, output string
	var all bool
	cmd := &cobra.Command{
		Use:   "get KIND [NAME...]",
		Short: "Show resources",
		Long: `Show resources of one kind: all of them, or those named. KIND is
case-insensitive and may be singular, plural or a short alias (gnp, np,
ippool, wep...). Namespaced kinds are read from -n (default "default") or
from every namespace with -A.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutputFormat(output); err != nil {
				return err
			}
			k, err := lookupKind(args[0])
			if err != nil {
				return err
			}
			if all && namespace != "" {
				return errors.New("--all-namespaces and --namespace cannot be combined")
			}
			ns := ""
			if k.Namespaced && !all {
				ns = defaultNamespace(namespace)
			}
			c, err := opts.Connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			return runGet(cmd.Context(), opts.Streams.Out, opts.Streams.ErrOut, c, k, ns, args[1:], output, all)
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace (default \"default\")")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "show namespaced resources of every namespace")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: yaml, json, wide or name (default: a table)")
	return cmd
}

func runGet(ctx context.Context, out, errOut io.Writer, c *datastore.Client, k api.KindInfo, ns string, names []string, output string, all bool) error {
	var objs []api.Object
	var missing []error
	if len(names) == 0 {
		list, _, err := c.List(ctx, k, datastore.ListOptions{Namespace: ns})
		if err != nil {
			return err
		}
		objs = list
		if all {
			sort.SliceStable(objs, func(i, j int) bool { return objs[i].GetNamespace() < objs[j].GetNamespace() })
		}
	} else {
		for _, n := range names {
			o, err := c.Get(ctx, k, ns, n)
			if errors.Is(err, datastore.ErrNotFound) {
				missing = append(missing, fmt.Errorf("%s not found", kindResourceName(k, n)))
				continue
			}
			if err != nil {
				return err
			}
			objs = append(objs, o)
		}
	}
	if len(objs) == 0 && len(missing) == 0 {
		where := ""
		if ns != "" {
			where = " in namespace " + ns
		}
		fmt.Fprintf(errOut, "No resources found%s.\n", where)
		return nil
	}
	if len(objs) > 0 {
		if err := printObjects(out, k, objs, output, len(names) == 1, all); err != nil {
			return err
		}
	}
	if len(missing) > 0 {
		return lineErrors(missing)
	}
	return nil
}

func newLabelCommand(opts *Options) *cobra.Command {
	var namespace string
	var overwrite, remove bool
	cmd := &cobra.Command{
		Use:   "label KIND NAME key=value... | key-... ",
		Short: "Add, change or remove labels of a resource",
		Long: `Set labels (key=value) or remove them (key-, or key with --remove) on one
resource. Changing an existing label's value needs --overwrite. The write is
a compare-and-swap, retried if someone else writes in between.`,
		Args: cobra.MinimumNArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := lookupKind(args[0])
			if err != nil {
				return err
			}
			set, del, err := parseLabelArgs(args[2:], remove)
			if err != nil {
				return err
			}
			ns := ""
			if k.Namespaced {
				ns = defaultNamespace(namespace)
			}
			c, err := opts.Connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			changed, err := relabel(cmd.Context(), c, k, ns, args[1], set, del, overwrite)
			if err != nil {
				return err
			}
			word := "labeled"
			if !changed {
				word = "not labeled (no change)"
			}
			fmt.Fprintf(opts.Streams.Out, "%s %s\n", kindResourceName(k, args[1]), word)
			return nil
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace (default \"default\")")
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "allow changing the value of an existing label")
	cmd.Flags().BoolVar(&remove, "remove", false, "remove the labels named (given as key, without =value)")
	return cmd
}

func parseLabelArgs(args []string, remove bool) (map[string]string, []string, error) {
	set := map[string]string{}
	var del []string
	for _, a := range args {
		switch {
		case remove:
			if strings.Contains(a, "=") {
				return nil, nil, fmt.Errorf("label %q: with --remove give only the key", a)
			}
			del = append(del, a)
		case strings.HasSuffix(a, "-") && !strings.Contains(a, "="):
			del = append(del, strings.TrimSuffix(a, "-"))
		case strings.Contains(a, "="):
			kv := strings.SplitN(a, "=", 2)
			if kv[0] == "" {
				return nil, nil, fmt.Errorf("label %q: empty key", a)
			}
			set[kv[0]] = kv[1]
		default:
			return nil, nil, fmt.Errorf("label %q: want key=value, or key- to remove", a)
		}
	}
	return set, del, nil
}

// relabel updates labels with compare-and-swap, retrying on conflicts.
func relabel(ctx context.Context, c *datastore.Client, k api.KindInfo, ns, name string, set map[string]string, del []string, overwrite bool) (bool, error) {
	for attempt := 0; ; attempt++ {
		obj, err := c.Get(ctx, k, ns, name)
		if errors.Is(err, datastore.ErrNotFound) {
			return false, fmt.Errorf("%s not found", kindResourceName(k, name))
		}
		if err != nil {
			return false, err
		}
		labels := obj.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		changed := false
		for key, v := range set {
			if old, ok := labels[key]; ok {
				if old == v {
					continue
				}
				if !overwrite {
					return false, fmt.Errorf("label %q already has the value %q; use --overwrite to change it", key, old)
				}
			}
			labels[key], changed = v, true
		}
		for _, key := range del {
			if _, ok := labels[key]; ok {
				delete(labels, key)
				changed = true
			}
		}
		if !changed {
			return false, nil
		}
		obj.SetLabels(labels)
		if err := api.Validate(obj); err != nil {
			return false, fmt.Errorf("%s: %w", kindResourceName(k, name), err)
		}
		_, err = c.Update(ctx, obj)
		if errors.Is(err, datastore.ErrConflict) && attempt < 5 {
			continue
		}
		return err == nil, err
	}
}

func newValidateCommand(opts *Options) *cobra.Command {
	f := &fileFlags{}
	cmd := &cobra.Command{
		Use:   "validate -f FILE|DIR|-",
		Short: "Check resources in files without writing them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := readInput(opts, f, true)
			if err != nil {
				return err
			}
			for _, o := range in.objs {
				fmt.Fprintf(opts.Streams.Out, "%s valid\n", resourceName(o))
			}
			return nil
		},
	}
	addFileFlags(cmd, f)
	return cmd
}

// shortError drops the etcd key from the datastore's "not found", "already
// exists" and "conflict" errors: the message names the document already.
func shortError(err error) string {
	for _, e := range []error{datastore.ErrNotFound, datastore.ErrAlreadyExists, datastore.ErrConflict} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return err.Error()
}
