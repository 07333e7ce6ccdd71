package npvdb

// Payloads and filters: Go values <-> the npvdb.v1 messages, with the same
// semantics as the Python client (clients/python/npvdb/payload.py).
//
// Everything is checked before a request is built, so a bad payload or a
// malformed filter fails in the client with a path naming the culprit
// (`payloads[3]["tags"][1]: ...`, `filter.must[0].match: ...`) and nothing
// is sent. These errors are gRPC status errors with code InvalidArgument,
// like the server's own answer to a bad request.

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "npvdb/v1"
)

// The contract's limits (npvdb.proto), checked here for a precise message.
const (
	MaxFields         = 64    // fields in one payload
	MaxFieldNameBytes = 255   // bytes of one field name
	MaxStringBytes    = 65535 // bytes of one string value
	MaxListStrings    = 1024  // strings in one list value
	MaxMatchAny       = 1024  // values of one MatchAny
)

// Payload holds the attributes stored beside one vector. A value is a
// string, an int64, a float64 (finite), a bool or a []string; the other Go
// integer kinds, float32 and a []any of strings are accepted on the way in
// and come back as int64, float64 and []string. A nil or empty Payload
// means "no payload".
type Payload map[string]any

func invalid(path, format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "npvdb: %s: %s", path, fmt.Sprintf(format, args...))
}

func checkString(path, s string, limit int) error {
	if len(s) > limit {
		return invalid(path, "%d bytes, at most %d", len(s), limit)
	}
	if !utf8.ValidString(s) {
		return invalid(path, "not valid UTF-8")
	}
	return nil
}

// toInt64 converts any Go integer; ok is false for other types.
func toInt64(path string, v any) (n int64, ok bool, err error) {
	switch x := v.(type) {
	case int:
		return int64(x), true, nil
	case int8:
		return int64(x), true, nil
	case int16:
		return int64(x), true, nil
	case int32:
		return int64(x), true, nil
	case int64:
		return x, true, nil
	case uint:
		return uintToInt64(path, uint64(x))
	case uint8:
		return int64(x), true, nil
	case uint16:
		return int64(x), true, nil
	case uint32:
		return int64(x), true, nil
	case uint64:
		return uintToInt64(path, x)
	}
	return 0, false, nil
}

func uintToInt64(path string, x uint64) (int64, bool, error) {
	if x > math.MaxInt64 {
		return 0, true, invalid(path, "%d does not fit int64", x)
	}
	return int64(x), true, nil
}

func stringsValue(path string, items []string) (*pb.Value, error) {
	if len(items) > MaxListStrings {
		return nil, invalid(path, "%d strings, at most %d", len(items), MaxListStrings)
	}
	for j, s := range items {
		if err := checkString(fmt.Sprintf("%s[%d]", path, j), s, MaxStringBytes); err != nil {
			return nil, err
		}
	}
	// A non-nil StringList even for no strings: an empty list is a list.
	return &pb.Value{Kind: &pb.Value_StringsValue{StringsValue: &pb.StringList{Values: items}}}, nil
}

// valuePB is the pb.Value of one payload value.
func valuePB(path string, v any) (*pb.Value, error) {
	if n, ok, err := toInt64(path, v); ok {
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_IntValue{IntValue: n}}, nil
	}
	switch x := v.(type) {
	case string:
		if err := checkString(path, x, MaxStringBytes); err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_StringValue{StringValue: x}}, nil
	case bool:
		return &pb.Value{Kind: &pb.Value_BoolValue{BoolValue: x}}, nil
	case float32:
		return valuePB(path, float64(x))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, invalid(path, "%v is not finite", x)
		}
		return &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: x}}, nil
	case []string:
		return stringsValue(path, x)
	case []any: // what encoding/json gives for a list
		items := make([]string, len(x))
		for j, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, invalid(fmt.Sprintf("%s[%d]", path, j),
					"a list holds only strings, got %T", e)
			}
			items[j] = s
		}
		return stringsValue(path, items)
	}
	return nil, invalid(path, "%T is not a payload type (string, int64, float64, bool, []string)", v)
}

// payloadPB is the pb.Payload of p (an empty one, no fields, for nil);
// path names p in errors ("payloads[3]").
func payloadPB(path string, p Payload) (*pb.Payload, error) {
	out := &pb.Payload{}
	if len(p) == 0 {
		return out, nil
	}
	if len(p) > MaxFields {
		return nil, invalid(path, "%d fields, at most %d", len(p), MaxFields)
	}
	// In name order, so that a payload with several bad fields always
	// reports the same one.
	names := make([]string, 0, len(p))
	for name := range p {
		names = append(names, name)
	}
	sort.Strings(names)
	out.Fields = make(map[string]*pb.Value, len(p))
	for _, name := range names {
		fpath := fmt.Sprintf("%s[%q]", path, name)
		if name == "" {
			return nil, invalid(fpath, "empty field name")
		}
		if err := checkString(fpath, name, MaxFieldNameBytes); err != nil {
			return nil, err
		}
		if strings.IndexByte(name, 0) >= 0 {
			return nil, invalid(fpath, "field name holds a NUL byte")
		}
		v, err := valuePB(fpath, p[name])
		if err != nil {
			return nil, err
		}
		out.Fields[name] = v
	}
	return out, nil
}

// Proto converts p to the contract's Payload message (for calls through
// RPC()); the error names the bad field.
func (p Payload) Proto() (*pb.Payload, error) { return payloadPB("payload", p) }

// PayloadFromProto converts a Payload message to a Payload (an empty,
// non-nil one for no fields).
func PayloadFromProto(m *pb.Payload) Payload {
	out := make(Payload, len(m.GetFields()))
	for name, v := range m.GetFields() {
		switch k := v.GetKind().(type) {
		case *pb.Value_StringValue:
			out[name] = k.StringValue
		case *pb.Value_IntValue:
			out[name] = k.IntValue
		case *pb.Value_DoubleValue:
			out[name] = k.DoubleValue
		case *pb.Value_BoolValue:
			out[name] = k.BoolValue
		case *pb.Value_StringsValue:
			out[name] = append([]string{}, k.StringsValue.GetValues()...)
		}
	}
	return out
}

func payloadsFromProto(what string, ms []*pb.Payload, n int) ([]Payload, error) {
	if len(ms) != n {
		return nil, fmt.Errorf("npvdb: %s reply with %d payloads for %d keys", what, len(ms), n)
	}
	out := make([]Payload, n)
	for i, m := range ms {
		out[i] = PayloadFromProto(m)
	}
	return out, nil
}

// ---- filters: Qdrant's shape ----

// Filter selects vectors by payload. A vector passes when every Must
// condition holds, at least one Should condition holds (if there are
// any), and no MustNot condition holds; an empty Filter passes everything.
// A Filter is also a Condition (a nested filter):
//
//	f := npvdb.Filter{
//		Must:    []npvdb.Condition{npvdb.Match("tenant", 42), npvdb.Range("price", npvdb.Gte(10), npvdb.Lt(20))},
//		MustNot: []npvdb.Condition{npvdb.MatchAny("tag", []string{"spam", "old"})},
//		Should:  []npvdb.Condition{npvdb.HasField("lang"), npvdb.Filter{Must: ...}},
//	}
//
// A condition on a field that a vector lacks, or that holds a value of
// another type, does not hold for it (a non-match, not an error).
type Filter struct {
	Must    []Condition
	Should  []Condition
	MustNot []Condition
}

// Condition is one test of a Filter: Match, MatchAny, Range, HasField or
// a nested Filter.
type Condition interface {
	fill(path string, out *pb.Condition) error
}

// Proto converts f to the contract's Filter message (for calls through
// RPC()); the error names the first malformed condition ("filter.must[1]").
func (f Filter) Proto() (*pb.Filter, error) {
	out := &pb.Filter{}
	return out, f.fillFilter("filter", out)
}

// filterPB is nil for a nil filter.
func filterPB(f *Filter) (*pb.Filter, error) {
	if f == nil {
		return nil, nil
	}
	return f.Proto()
}

func (f Filter) fillFilter(path string, out *pb.Filter) error {
	var err error
	if out.Must, err = conditionsPB(path+".must", f.Must); err != nil {
		return err
	}
	if out.Should, err = conditionsPB(path+".should", f.Should); err != nil {
		return err
	}
	out.MustNot, err = conditionsPB(path+".must_not", f.MustNot)
	return err
}

func conditionsPB(path string, conds []Condition) ([]*pb.Condition, error) {
	if len(conds) == 0 {
		return nil, nil
	}
	out := make([]*pb.Condition, len(conds))
	for i, c := range conds {
		cpath := fmt.Sprintf("%s[%d]", path, i)
		if nf, ok := c.(*Filter); c == nil || ok && nf == nil {
			return nil, invalid(cpath, "nil condition")
		}
		out[i] = &pb.Condition{}
		if err := c.fill(cpath, out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// fill makes a Filter a Condition: a nested filter.
func (f Filter) fill(path string, out *pb.Condition) error {
	nested := &pb.Filter{}
	out.Condition = &pb.Condition_Filter{Filter: nested}
	return f.fillFilter(path, nested)
}

func checkKey(path, key string) error {
	if key == "" {
		return invalid(path+".key", "a non-empty field name")
	}
	return nil
}

type matchCond struct {
	key   string
	value any
}

// Match holds when field key equals value: a string, a bool or an integer
// (of any Go integer type); for a []string field, when the list contains
// value. A float is an error: use Range.
func Match(key string, value any) Condition { return matchCond{key, value} }

func (c matchCond) fill(path string, out *pb.Condition) error {
	if err := checkKey(path, c.key); err != nil {
		return err
	}
	out.Key = c.key
	vpath := path + ".match.value"
	m := &pb.Match{}
	if n, ok, err := toInt64(vpath, c.value); ok {
		if err != nil {
			return err
		}
		m.Kind = &pb.Match_Integer{Integer: n}
	} else {
		switch x := c.value.(type) {
		case string:
			m.Kind = &pb.Match_Keyword{Keyword: x}
		case bool:
			m.Kind = &pb.Match_Boolean{Boolean: x}
		default:
			return invalid(vpath, "match a string, int or bool (MatchAny for several, "+
				"Range for floats), got %T", c.value)
		}
	}
	out.Condition = &pb.Condition_Match{Match: m}
	return nil
}

type matchAnyCond struct {
	key    string
	values any
}

// MatchAny holds when field key equals any of values (for a []string
// field: the list contains any of them). values is a non-empty []string,
// a slice of one Go integer type, or a []any all of strings or all of
// integers; at most MaxMatchAny of them.
func MatchAny(key string, values any) Condition { return matchAnyCond{key, values} }

func (c matchAnyCond) fill(path string, out *pb.Condition) error {
	if err := checkKey(path, c.key); err != nil {
		return err
	}
	out.Key = c.key
	apath := path + ".match.any"
	var items []any
	switch x := c.values.(type) {
	case []string:
		if err := checkAnyLen(apath, len(x)); err != nil {
			return err
		}
		out.Condition = &pb.Condition_Match{Match: &pb.Match{
			Kind: &pb.Match_Keywords{Keywords: &pb.StringList{Values: x}}}}
		return nil
	case []int64:
		if err := checkAnyLen(apath, len(x)); err != nil {
			return err
		}
		out.Condition = &pb.Condition_Match{Match: &pb.Match{
			Kind: &pb.Match_Integers{Integers: &pb.IntList{Values: x}}}}
		return nil
	case []int:
		items = make([]any, len(x))
		for i, v := range x {
			items[i] = v
		}
	case []int32:
		items = make([]any, len(x))
		for i, v := range x {
			items[i] = v
		}
	case []uint64:
		items = make([]any, len(x))
		for i, v := range x {
			items[i] = v
		}
	case []any:
		items = x
	default:
		return invalid(apath, "a []string, []int64 or []any, got %T", c.values)
	}
	if err := checkAnyLen(apath, len(items)); err != nil {
		return err
	}
	m := &pb.Match{}
	if _, ok := items[0].(string); ok {
		strs := make([]string, len(items))
		for i, v := range items {
			s, ok := v.(string)
			if !ok {
				return invalid(apath, "all strings or all ints, got %s", typeNames(items))
			}
			strs[i] = s
		}
		m.Kind = &pb.Match_Keywords{Keywords: &pb.StringList{Values: strs}}
	} else {
		ints := make([]int64, len(items))
		for i, v := range items {
			n, ok, err := toInt64(fmt.Sprintf("%s[%d]", apath, i), v)
			if err != nil {
				return err
			}
			if !ok {
				return invalid(apath, "all strings or all ints, got %s", typeNames(items))
			}
			ints[i] = n
		}
		m.Kind = &pb.Match_Integers{Integers: &pb.IntList{Values: ints}}
	}
	out.Condition = &pb.Condition_Match{Match: m}
	return nil
}

func checkAnyLen(path string, n int) error {
	if n == 0 {
		return invalid(path, "a non-empty list of strings or of ints")
	}
	if n > MaxMatchAny {
		return invalid(path, "%d values, at most %d", n, MaxMatchAny)
	}
	return nil
}

// typeNames lists the distinct types of items, sorted: "[float64 string]".
func typeNames(items []any) string {
	seen := map[string]bool{}
	var names []string
	for _, v := range items {
		t := fmt.Sprintf("%T", v)
		if !seen[t] {
			seen[t] = true
			names = append(names, t)
		}
	}
	sort.Strings(names)
	return "[" + strings.Join(names, " ") + "]"
}

// Bound is one bound of a Range: Gt, Gte, Lt or Lte.
type Bound struct {
	op string // "gt", "gte", "lt", "lte"
	v  float64
}

// Gt is the bound "> v".
func Gt(v float64) Bound { return Bound{"gt", v} }

// Gte is the bound ">= v".
func Gte(v float64) Bound { return Bound{"gte", v} }

// Lt is the bound "< v".
func Lt(v float64) Bound { return Bound{"lt", v} }

// Lte is the bound "<= v".
func Lte(v float64) Bound { return Bound{"lte", v} }

type rangeCond struct {
	key    string
	bounds []Bound
}

// Range holds when field key is a number (int64 or float64) within every
// bound given; at least one bound, each finite. Several bounds on one side
// keep the tightest: Range(k, Gt(5), Gte(5)) is Gt(5), Range(k, Gt(3),
// Gte(5)) is Gte(5).
func Range(key string, bounds ...Bound) Condition { return rangeCond{key, bounds} }

func (c rangeCond) fill(path string, out *pb.Condition) error {
	if err := checkKey(path, c.key); err != nil {
		return err
	}
	out.Key = c.key
	rpath := path + ".range"
	if len(c.bounds) == 0 {
		return invalid(rpath, "no bound (give Gt, Gte, Lt or Lte)")
	}
	var lower, upper *Bound
	for i := range c.bounds {
		b := &c.bounds[i]
		if math.IsNaN(b.v) || math.IsInf(b.v, 0) {
			return invalid(rpath+"."+b.op, "%v is not finite", b.v)
		}
		switch b.op {
		case "gt", "gte":
			if lower == nil || b.v > lower.v || b.v == lower.v && b.op == "gt" {
				lower = b
			}
		case "lt", "lte":
			if upper == nil || b.v < upper.v || b.v == upper.v && b.op == "lt" {
				upper = b
			}
		default: // the zero Bound{}
			return invalid(rpath, "bound %d is not Gt, Gte, Lt or Lte", i)
		}
	}
	r := &pb.Range{}
	if lower != nil {
		if lower.op == "gt" {
			r.Lower = &pb.Range_Gt{Gt: lower.v}
		} else {
			r.Lower = &pb.Range_Gte{Gte: lower.v}
		}
	}
	if upper != nil {
		if upper.op == "lt" {
			r.Upper = &pb.Range_Lt{Lt: upper.v}
		} else {
			r.Upper = &pb.Range_Lte{Lte: upper.v}
		}
	}
	out.Condition = &pb.Condition_Range{Range: r}
	return nil
}

type hasFieldCond string

// HasField holds when the vector's payload has field key (of any type).
func HasField(key string) Condition { return hasFieldCond(key) }

func (c hasFieldCond) fill(path string, out *pb.Condition) error {
	if c == "" {
		return invalid(path+".has_field", "a non-empty field name")
	}
	out.Condition = &pb.Condition_HasField{HasField: string(c)}
	return nil
}
