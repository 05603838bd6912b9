package api

import (
	"fmt"
	"strings"
)

// FieldError is one problem with one field of an object. Path is the field
// path as the user wrote it, e.g. "spec.ingress[2].destination.ports[0]";
// it is empty for a problem with the object as a whole.
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// FieldErrors lists every problem found in one object. Validate and the
// decoder return it (inside a *DocumentError when decoding) so callers can
// show each problem with its path.
type FieldErrors []*FieldError

func (es FieldErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// DocumentError is a problem with one document of a decoded file.
//
// Index is the 0-based position of the document in the file: YAML documents
// separated by "---" (empty ones count, so the number matches what the user
// sees) or JSON values. Item is the 0-based position inside a List's items
// (or inside a top-level YAML/JSON array), or -1 for a document that is not
// in a list. Both are rendered 1-based: "document 2, item 5".
type DocumentError struct {
	Index int
	Item  int
	// Kind and Name identify the object as the user wrote it (the v1 kind
	// for a v1 document), when they could be read.
	Kind string
	Name string
	Err  error
}

func (e *DocumentError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "document %d", e.Index+1)
	if e.Item >= 0 {
		fmt.Fprintf(&b, ", item %d", e.Item+1)
	}
	switch {
	case e.Kind != "" && e.Name != "":
		fmt.Fprintf(&b, " (%s %q)", e.Kind, e.Name)
	case e.Kind != "":
		fmt.Fprintf(&b, " (%s)", e.Kind)
	case e.Name != "":
		fmt.Fprintf(&b, " (%q)", e.Name)
	}
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *DocumentError) Unwrap() error { return e.Err }

// fieldErrs accumulates FieldErrors with printf-style helpers.
type fieldErrs struct {
	list FieldErrors
}

func (f *fieldErrs) add(path, format string, args ...any) {
	f.list = append(f.list, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (f *fieldErrs) err() error {
	if len(f.list) == 0 {
		return nil
	}
	return f.list
}

// joinPath appends a field name to a path.
func joinPath(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// indexPath appends a list index to a path.
func indexPath(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}
