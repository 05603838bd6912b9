package ctl

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/brindle-net/brindle/api"
)

// fileFlags are -f, -R and -n as the writing commands take them.
type fileFlags struct {
	files     []string
	recursive bool
	namespace string
}

// source says where a decoded object came from, for messages.
type source struct {
	file  string // "" for stdin
	index int    // position among the file's objects, 0-based
}

// input is every object of every file, in order.
type input struct {
	objs      []api.Object
	sources   []source
	multiFile bool
	named     bool // from KIND NAME... arguments, not files
}

// expandFiles turns -f arguments into files: "-" is stdin, a directory
// gives its .yaml, .yml and .json files (recursively with -R), sorted.
func expandFiles(args []string, recursive bool) ([]string, error) {
	var out []string
	for _, a := range args {
		if a == "-" {
			out = append(out, a)
			continue
		}
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		var found []string
		err = filepath.WalkDir(a, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if p != a && !recursive {
					return filepath.SkipDir
				}
				return nil
			}
			switch strings.ToLower(filepath.Ext(p)) {
			case ".yaml", ".yml", ".json":
				found = append(found, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

// readInput reads, decodes and (if validate) defaults and validates every
// document of every file. Namespaced objects without a namespace get -n's
// (or "default"); one with a namespace other than -n's is an error. Every
// problem in every file is reported; nothing is returned if any.
func readInput(opts *Options, f *fileFlags, validate bool) (*input, error) {
	if len(f.files) == 0 {
		return nil, errors.New("no input: give -f FILE, -f DIR or -f - (stdin)")
	}
	files, err := expandFiles(f.files, f.recursive)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no .yaml, .yml or .json files in %s", strings.Join(f.files, ", "))
	}
	in := &input{multiFile: len(files) > 1}
	var errs []error
	for _, file := range files {
		name := file
		var data []byte
		if file == "-" {
			name = ""
			data, err = io.ReadAll(opts.Streams.In)
		} else {
			data, err = os.ReadFile(file)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		objs, err := decodeFile(data, f.namespace, validate)
		if err != nil {
			errs = append(errs, inFile(name, in.multiFile, err)...)
			continue
		}
		for i, o := range objs {
			in.objs = append(in.objs, o)
			in.sources = append(in.sources, source{file: name, index: i})
		}
	}
	if len(errs) > 0 {
		return nil, lineErrors(errs)
	}
	if len(in.objs) == 0 {
		return nil, errors.New("no resources found in the input")
	}
	return in, nil
}

// decodeFile decodes one file and settles namespaces.
func decodeFile(data []byte, namespace string, validate bool) ([]api.Object, error) {
	// Which namespaced objects name no namespace: the validating decoder
	// fills in "default", so ask the plain decoder first when -n matters.
	var unset []bool
	if namespace != "" || !validate {
		raw, err := api.DecodeDocuments(data)
		if err != nil {
			return nil, err
		}
		unset = make([]bool, len(raw))
		for i, o := range raw {
			unset[i] = o.GetNamespace() == ""
		}
		if !validate {
			return raw, setNamespaces(raw, unset, namespace)
		}
	}
	objs, err := api.DecodeAndValidate(data)
	if err != nil {
		return nil, err
	}
	if unset == nil {
		return objs, nil
	}
	if len(unset) != len(objs) {
		return nil, fmt.Errorf("decoder returned %d objects, then %d", len(unset), len(objs))
	}
	return objs, setNamespaces(objs, unset, namespace)
}

func setNamespaces(objs []api.Object, unset []bool, namespace string) error {
	var errs []error
	for i, o := range objs {
		k, ok := api.KindOf(o)
		if !ok || !k.Namespaced {
			continue
		}
		switch {
		case unset[i] && namespace != "":
			o.SetNamespace(namespace)
		case unset[i]:
			o.SetNamespace("default")
		case namespace != "" && o.GetNamespace() != namespace:
			errs = append(errs, fmt.Errorf("document %d (%s %q): metadata.namespace: %q does not match --namespace %q",
				i+1, k.Kind, o.GetName(), o.GetNamespace(), namespace))
		}
	}
	return errors.Join(errs...)
}

// inFile splits a (joined) error into one error per line, prefixed with
// the file name when several files are read.
func inFile(file string, multi bool, err error) []error {
	var parts []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		parts = j.Unwrap()
	} else {
		parts = []error{err}
	}
	if !multi || file == "" {
		return parts
	}
	out := make([]error, len(parts))
	for i, p := range parts {
		out[i] = fmt.Errorf("%s: %w", file, p)
	}
	return out
}

// lineErrors is several errors, one per line, each printed as "error: ...".
type lineErrors []error

func (l lineErrors) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	// brindlectl prints "error: " before the first line.
	return strings.Join(msgs, "\nerror: ")
}

func (l lineErrors) Unwrap() []error { return l }

// describe names input object i for an error message.
func (in *input) describe(i int) string {
	o := in.objs[i]
	if in.named {
		return resourceName(o)
	}
	kind := o.GetObjectKind().GroupVersionKind().Kind
	if k, ok := api.KindOf(o); ok {
		kind = k.Kind
	}
	id := o.GetName()
	if o.GetNamespace() != "" {
		id = o.GetNamespace() + "/" + id
	}
	s := in.sources[i]
	d := fmt.Sprintf("document %d (%s %q)", s.index+1, kind, id)
	if in.multiFile && s.file != "" {
		d = s.file + ": " + d
	}
	return d
}
