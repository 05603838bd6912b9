package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// API versions the decoder accepts besides projectcalico.org/v3.
const (
	// APIVersionV1 is the 2017 Calico API (calicoctl v1.x); its documents
	// are converted to v3 objects on input.
	APIVersionV1 = "v1"
	// APIVersionK8sNetworking is the Kubernetes NetworkPolicy API version.
	APIVersionK8sNetworking = "networking.k8s.io/v1"
)

// decoded is one object read from a file, with where it came from.
type decoded struct {
	obj   Object
	index int // document position in the file, 0-based
	item  int // position in a List or array, or -1
	kind  string
	name  string
}

// rawDoc is one top-level document of a file, as JSON.
type rawDoc struct {
	index int
	json  []byte
}

// DecodeDocuments decodes every document of a file: YAML documents
// separated by "---", a JSON object, several concatenated JSON objects, or
// a YAML or JSON array of objects. A document may be a List ("kind: List" or
// "<Kind>List" with "items"). Documents may mix projectcalico.org/v3
// objects, 2017 v1 objects (converted to v3 here) and Kubernetes
// networking.k8s.io/v1 NetworkPolicies (returned as
// *networkingv1.NetworkPolicy, not translated). Kinds are matched
// case-insensitively and accept the aliases of LookupKind.
//
// Decoding is strict: an unknown or duplicated field is an error naming the
// field. Empty documents are skipped. Objects are returned as written: call
// Default and Validate (or use DecodeAndValidate) before using them.
//
// On any error no objects are returned; the error joins a *DocumentError for
// every document that failed.
func DecodeDocuments(data []byte) ([]Object, error) {
	docs, err := decodeAll(data)
	if err != nil {
		return nil, err
	}
	objs := make([]Object, len(docs))
	for i, d := range docs {
		objs[i] = d.obj
	}
	return objs, nil
}

// DecodeAndValidate decodes every document as DecodeDocuments does, gives a
// namespaced object without a namespace the namespace "default" (as
// calicoctl does without -n), then defaults and validates each one. Every
// problem of every document is reported, each inside a *DocumentError.
func DecodeAndValidate(data []byte) ([]Object, error) {
	docs, err := decodeAll(data)
	if err != nil {
		return nil, err
	}
	var errs []error
	objs := make([]Object, len(docs))
	for i, d := range docs {
		if info, ok := KindOf(d.obj); ok && info.Namespaced && d.obj.GetNamespace() == "" {
			d.obj.SetNamespace("default")
		}
		Default(d.obj)
		if err := Validate(d.obj); err != nil {
			errs = append(errs, &DocumentError{Index: d.index, Item: d.item, Kind: d.kind, Name: d.name, Err: err})
		}
		objs[i] = d.obj
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return objs, nil
}

func decodeAll(data []byte) ([]decoded, error) {
	raws, errs := splitDocuments(data)
	var out []decoded
	for _, r := range raws {
		objs, derrs := decodeDocument(r)
		out = append(out, objs...)
		errs = append(errs, derrs...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// splitDocuments cuts a file into top-level documents, each as JSON. Empty
// documents are dropped but keep their position.
func splitDocuments(data []byte) ([]rawDoc, []error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, nil
	}
	if trimmed[0] == '{' || trimmed[0] == '[' {
		if docs, ok := splitJSON(trimmed); ok {
			return docs, nil
		}
		// Not JSON after all: YAML flow style is parsed below.
	}
	var docs []rawDoc
	var errs []error
	for i, chunk := range splitYAML(data) {
		j, err := yaml.YAMLToJSONStrict(chunk.text)
		if err != nil {
			errs = append(errs, &DocumentError{Index: i, Item: -1,
				Err: fmt.Errorf("invalid YAML in the document starting at line %d: %w", chunk.line, err)})
			continue
		}
		if isEmptyJSON(j) {
			continue
		}
		docs = append(docs, rawDoc{index: i, json: j})
	}
	return docs, errs
}

// splitJSON reads a stream of JSON values; ok is false if data is not one.
func splitJSON(data []byte) ([]rawDoc, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var docs []rawDoc
	for i := 0; ; i++ {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == io.EOF {
			return docs, i > 0
		}
		if err != nil {
			return nil, false
		}
		if !isEmptyJSON(raw) {
			docs = append(docs, rawDoc{index: i, json: raw})
		}
	}
}

func isEmptyJSON(j []byte) bool {
	t := bytes.TrimSpace(j)
	return len(t) == 0 || string(t) == "null"
}

type yamlChunk struct {
	text []byte
	line int // 1-based line of the chunk's first line
}

// splitYAML cuts YAML at document separators: lines that are "---",
// optionally followed by spaces or a comment.
func splitYAML(data []byte) []yamlChunk {
	var chunks []yamlChunk
	start, startLine, line := 0, 1, 1
	for pos := 0; pos <= len(data); {
		end := bytes.IndexByte(data[pos:], '\n')
		next := len(data) + 1
		if end >= 0 {
			end += pos
			next = end + 1
		} else {
			end = len(data)
		}
		l := bytes.TrimRight(data[pos:end], "\r")
		if isDocSeparator(l) {
			// A separator before any content does not start a new document.
			if pos > start || len(chunks) > 0 {
				chunks = append(chunks, yamlChunk{text: data[start:pos], line: startLine})
			}
			start, startLine = min(next, len(data)), line+1
		}
		pos = next
		line++
	}
	chunks = append(chunks, yamlChunk{text: data[start:], line: startLine})
	return chunks
}

func isDocSeparator(l []byte) bool {
	if !bytes.HasPrefix(l, []byte("---")) {
		return false
	}
	rest := l[3:]
	if len(rest) == 0 {
		return true
	}
	if rest[0] != ' ' && rest[0] != '\t' {
		return false
	}
	rest = bytes.TrimSpace(rest)
	return len(rest) == 0 || rest[0] == '#'
}

// header is what the decoder reads before choosing a type.
type header struct {
	apiVersion string
	kind       string
	name       string
	fields     map[string]json.RawMessage
}

func readHeader(raw []byte) (header, error) {
	var h header
	if err := json.Unmarshal(raw, &h.fields); err != nil {
		return h, fmt.Errorf("a document must be an object with apiVersion, kind, metadata and spec, got %s", describeJSON(raw))
	}
	var fe fieldErrs
	str := func(key string, m map[string]json.RawMessage) string {
		v, ok := m[key]
		if !ok || isEmptyJSON(v) {
			return ""
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			fe.add(key, "must be a string, got %s", describeJSON(v))
		}
		return s
	}
	h.apiVersion = str("apiVersion", h.fields)
	h.kind = str("kind", h.fields)
	if md, ok := h.fields["metadata"]; ok {
		var m map[string]json.RawMessage
		if json.Unmarshal(md, &m) == nil {
			// v1 ipPools are identified by cidr, v1 bgpPeers by peerIP.
			for _, k := range []string{"name", "cidr", "peerIP"} {
				var s string
				if v, ok := m[k]; ok && json.Unmarshal(v, &s) == nil && s != "" {
					h.name = s
					break
				}
			}
		}
	}
	return h, fe.err()
}

// decodeDocument decodes one top-level document: an object, a List, or an
// array of objects.
func decodeDocument(r rawDoc) ([]decoded, []error) {
	t := bytes.TrimSpace(r.json)
	if len(t) > 0 && t[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(t, &items); err != nil {
			return nil, []error{&DocumentError{Index: r.index, Item: -1, Err: err}}
		}
		return decodeItems(r.index, items, header{})
	}
	h, err := readHeader(t)
	if err != nil {
		return nil, []error{&DocumentError{Index: r.index, Item: -1, Kind: h.kind, Name: h.name, Err: err}}
	}
	if isListKind(h) {
		var fe fieldErrs
		for k := range h.fields {
			switch k {
			case "apiVersion", "kind", "metadata", "items":
			default:
				fe.add(k, "unknown field")
			}
		}
		var items []json.RawMessage
		if v := h.fields["items"]; !isEmptyJSON(v) {
			if err := json.Unmarshal(v, &items); err != nil {
				fe.add("items", "must be a list of objects, got %s", describeJSON(v))
			}
		}
		if err := fe.err(); err != nil {
			return nil, []error{&DocumentError{Index: r.index, Item: -1, Kind: h.kind, Err: err}}
		}
		inherit := header{apiVersion: h.apiVersion}
		if !strings.EqualFold(h.kind, "List") {
			inherit.kind = h.kind[:len(h.kind)-len("List")]
		}
		return decodeItems(r.index, items, inherit)
	}
	obj, err := decodeObject(h, t)
	if err != nil {
		return nil, []error{&DocumentError{Index: r.index, Item: -1, Kind: h.kind, Name: h.name, Err: err}}
	}
	return []decoded{{obj: obj, index: r.index, item: -1, kind: kindForErrors(h, obj), name: h.name}}, nil
}

// isListKind reports whether a document is a List: kind "List", or
// "<Kind>List" with items.
func isListKind(h header) bool {
	if strings.EqualFold(h.kind, "List") {
		return true
	}
	_, hasItems := h.fields["items"]
	if !hasItems || len(h.kind) <= len("List") || !strings.EqualFold(h.kind[len(h.kind)-4:], "List") {
		return false
	}
	return true
}

func decodeItems(index int, items []json.RawMessage, inherit header) ([]decoded, []error) {
	var out []decoded
	var errs []error
	for i, raw := range items {
		if isEmptyJSON(raw) {
			continue
		}
		h, err := readHeader(raw)
		if err == nil && isListKind(h) {
			err = errors.New("a list item may not itself be a List")
		}
		if err != nil {
			errs = append(errs, &DocumentError{Index: index, Item: i, Kind: h.kind, Name: h.name, Err: err})
			continue
		}
		if h.apiVersion == "" {
			h.apiVersion = inherit.apiVersion
		}
		if h.kind == "" {
			h.kind = inherit.kind
		}
		obj, err := decodeObject(h, raw)
		if err != nil {
			errs = append(errs, &DocumentError{Index: index, Item: i, Kind: h.kind, Name: h.name, Err: err})
			continue
		}
		out = append(out, decoded{obj: obj, index: index, item: i, kind: kindForErrors(h, obj), name: h.name})
	}
	return out, errs
}

// kindForErrors is the kind named in errors about a decoded object: the
// canonical v3 kind, or the kind as written for other API versions.
func kindForErrors(h header, obj Object) string {
	if h.apiVersion == APIVersion {
		if info, ok := KindOf(obj); ok {
			return info.Kind
		}
	}
	return h.kind
}

// decodeObject decodes one object whose header has been read.
func decodeObject(h header, raw []byte) (Object, error) {
	if h.kind == "" {
		return nil, FieldErrors{{Path: "kind", Msg: "is required"}}
	}
	switch h.apiVersion {
	case APIVersion:
		info, ok := LookupKind(h.kind)
		if !ok {
			return nil, FieldErrors{{Path: "kind", Msg: fmt.Sprintf("unknown kind %q for apiVersion %s", h.kind, APIVersion)}}
		}
		if info.Kind == KindKubernetesNetworkPolicy {
			return nil, FieldErrors{{Path: "kind", Msg: fmt.Sprintf("%s is read-only; write a Kubernetes NetworkPolicy with apiVersion %s instead", h.kind, APIVersionK8sNetworking)}}
		}
		obj := info.New()
		if err := strictDecode(raw, obj); err != nil {
			return nil, err
		}
		obj.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{Group: Group, Version: Version, Kind: info.Kind})
		return obj, nil
	case APIVersionK8sNetworking:
		if !strings.EqualFold(h.kind, "NetworkPolicy") {
			return nil, FieldErrors{{Path: "kind", Msg: fmt.Sprintf("unsupported kind %q for apiVersion %s (only NetworkPolicy)", h.kind, APIVersionK8sNetworking)}}
		}
		np := &networkingv1.NetworkPolicy{}
		if err := strictDecode(raw, np); err != nil {
			return nil, err
		}
		np.APIVersion, np.Kind = APIVersionK8sNetworking, "NetworkPolicy"
		return np, nil
	case APIVersionV1:
		return decodeV1(h.kind, raw)
	case "":
		return nil, FieldErrors{{Path: "apiVersion", Msg: fmt.Sprintf("is required (%s, %s or the 2017 %s)", APIVersion, APIVersionK8sNetworking, APIVersionV1)}}
	default:
		return nil, FieldErrors{{Path: "apiVersion", Msg: fmt.Sprintf("unsupported apiVersion %q (want %s, %s or the 2017 %s)", h.apiVersion, APIVersion, APIVersionK8sNetworking, APIVersionV1)}}
	}
}

// strictDecode decodes raw into v, rejecting unknown and duplicate fields,
// and reports problems as FieldErrors with full paths.
func strictDecode(raw []byte, v any) error {
	strictErrs, err := kjson.UnmarshalStrict(raw, v)
	if err != nil {
		// The JSON decoder does not say where a value was rejected; find it
		// by walking the document alongside the Go type.
		var tree any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if dec.Decode(&tree) == nil {
			if fe := locateError(tree, reflect.TypeOf(v), ""); fe != nil {
				return FieldErrors{fe}
			}
		}
		return FieldErrors{{Msg: err.Error()}}
	}
	if len(strictErrs) == 0 {
		return nil
	}
	var fes FieldErrors
	for _, e := range strictErrs {
		var pe kjson.FieldError
		msg := e.Error()
		if errors.As(e, &pe) {
			what := "unknown field"
			if strings.HasPrefix(msg, "duplicate field") {
				what = "duplicate field"
			}
			fes = append(fes, &FieldError{Path: pe.FieldPath(), Msg: what})
			continue
		}
		fes = append(fes, &FieldError{Msg: msg})
	}
	sort.SliceStable(fes, func(i, j int) bool { return fes[i].Path < fes[j].Path })
	return fes
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// locateError walks a generic JSON tree alongside the Go type it is being
// decoded into and returns the first value that cannot be decoded, with its
// path. It returns nil if it finds nothing wrong.
func locateError(raw any, t reflect.Type, path string) *FieldError {
	if raw == nil {
		return nil
	}
	if t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(unmarshalerType) {
		b, err := json.Marshal(raw)
		if err != nil {
			return nil
		}
		if err := reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(b); err != nil {
			return &FieldError{Path: path, Msg: err.Error()}
		}
		return nil
	}
	mismatch := func(want string) *FieldError {
		return &FieldError{Path: path, Msg: fmt.Sprintf("must be %s, got %s", want, describeValue(raw))}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return locateError(raw, t.Elem(), path)
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			return mismatch("an object")
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if ft, ok := fields[k]; ok {
				if fe := locateError(m[k], ft, joinPath(path, k)); fe != nil {
					return fe
				}
			}
		}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			if _, ok := raw.(string); !ok {
				return mismatch("a base64 string")
			}
			return nil
		}
		a, ok := raw.([]any)
		if !ok {
			return mismatch("a list")
		}
		for i, e := range a {
			if fe := locateError(e, t.Elem(), indexPath(path, i)); fe != nil {
				return fe
			}
		}
	case reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok {
			return mismatch("an object")
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if fe := locateError(m[k], t.Elem(), path+"["+k+"]"); fe != nil {
				return fe
			}
		}
	case reflect.String:
		if _, ok := raw.(string); !ok {
			fe := mismatch("a string")
			if _, isBool := raw.(bool); isBool {
				fe.Msg += " (YAML reads unquoted yes, no, on, off, y and n as booleans: quote the value)"
			}
			return fe
		}
	case reflect.Bool:
		if _, ok := raw.(bool); !ok {
			return mismatch("true or false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := raw.(json.Number)
		if !ok {
			return mismatch("an integer")
		}
		if _, err := strconv.ParseInt(n.String(), 10, t.Bits()); err != nil {
			return &FieldError{Path: path, Msg: fmt.Sprintf("%s is not an integer that fits in %d bits", n, t.Bits())}
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := raw.(json.Number)
		if !ok {
			return mismatch("a non-negative integer")
		}
		if _, err := strconv.ParseUint(n.String(), 10, t.Bits()); err != nil {
			return &FieldError{Path: path, Msg: fmt.Sprintf("%s is not an integer from 0 to %d", n, uint64(1)<<t.Bits()-1)}
		}
	case reflect.Float32, reflect.Float64:
		n, ok := raw.(json.Number)
		if !ok {
			return mismatch("a number")
		}
		if _, err := strconv.ParseFloat(n.String(), t.Bits()); err != nil {
			return &FieldError{Path: path, Msg: fmt.Sprintf("%s is not a valid number", n)}
		}
	}
	return nil
}

// jsonFields maps the JSON names of a struct's fields (including those of
// inlined embedded structs) to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					if _, dup := out[k]; !dup {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// describeValue renders a generic JSON value for an error message.
func describeValue(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case json.Number:
		return "number " + v.String()
	case bool:
		return "boolean " + strconv.FormatBool(v)
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", v)
}

func describeJSON(raw []byte) string {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return "invalid JSON"
	}
	return describeValue(v)
}
