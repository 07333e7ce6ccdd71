// render.go -- renders a Helm chart's templates with Go's text/template, the
// engine Helm itself uses, so the chart can be checked on a machine without the
// helm binary (Debian 12 has none, and there is no network to fetch it).
//
// It is NOT helm: it has only the few Sprig functions the npvdb chart uses,
// toYaml writes block YAML that quotes more strings than helm does (same
// data), and .Capabilities, .Files and subcharts do not exist. A missing
// key is an error here (helm prints nothing), which is stricter on purpose: a
// misspelt .Values path fails the test instead of rendering empty.
//
// lookup answers from the objects of -existing (a JSON list of Kubernetes
// objects, standing for the cluster), an empty map for anything else (what
// `helm template` gets); randAlphaNum draws from crypto/rand as Sprig does.
//
// usage: render -chart DIR -values VALUES.json [-release NAME]
// [-namespace NS] [-existing OBJECTS.json] [-notes]
// Prints "---\n# Source: CHART/templates/FILE\n<manifest>" per non-empty
// template, or with -notes the rendered NOTES.txt. Exit 1 with the template
// error (e.g. from `fail`) on stderr.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
)

func toInt64(v interface{}) int64 {
	switch x := v.(type) {
	case int:
		return int64(x)
	case int64:
		return x
	case float64:
		return int64(x)
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	case bool:
		if x {
			return 1
		}
	}
	return 0
}

// empty is Sprig's notion: nil, zero numbers, "", false, empty collections.
func empty(v interface{}) bool {
	if v == nil {
		return true
	}
	r := reflect.ValueOf(v)
	switch r.Kind() {
	case reflect.Map, reflect.Slice, reflect.Array, reflect.String:
		return r.Len() == 0
	case reflect.Bool:
		return !r.Bool()
	case reflect.Float64, reflect.Float32:
		return r.Float() == 0
	case reflect.Int, reflect.Int64, reflect.Int32:
		return r.Int() == 0
	}
	return false
}

func scalar(v interface{}) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(x)
	case float64:
		if x == float64(int64(x)) {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case map[string]interface{}:
		return "{}"
	case []interface{}:
		return "[]"
	}
	s := fmt.Sprint(v)
	if plain.MatchString(s) && !reserved[strings.ToLower(s)] {
		return s
	}
	b, _ := json.Marshal(s) // a JSON string is a YAML double-quoted scalar
	return string(b)
}

// Strings written without quotes: no YAML indicator, not a number or keyword.
var plain = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_./-]*$`)
var reserved = map[string]bool{"true": true, "false": true, "null": true, "yes": true,
	"no": true, "on": true, "off": true, "y": true, "n": true, "~": true}

func isBlock(v interface{}) bool {
	switch x := v.(type) {
	case map[string]interface{}:
		return len(x) > 0
	case []interface{}:
		return len(x) > 0
	}
	return false
}

// emit writes v as block YAML at indentation ind; map keys sorted, as helm's.
func emit(b *strings.Builder, v interface{}, ind int) {
	pad := strings.Repeat(" ", ind)
	switch x := v.(type) {
	case map[string]interface{}:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if isBlock(x[k]) {
				fmt.Fprintf(b, "%s%s:\n", pad, scalar(k))
				emit(b, x[k], ind+2)
			} else {
				fmt.Fprintf(b, "%s%s: %s\n", pad, scalar(k), scalar(x[k]))
			}
		}
	case []interface{}:
		for _, e := range x {
			if !isBlock(e) {
				fmt.Fprintf(b, "%s- %s\n", pad, scalar(e))
				continue
			}
			var t strings.Builder
			emit(&t, e, ind+2)
			b.WriteString(pad + "- " + t.String()[ind+2:])
		}
	default:
		b.WriteString(pad + scalar(v) + "\n")
	}
}

func toYaml(v interface{}) string {
	if !isBlock(v) {
		return scalar(v)
	}
	var b strings.Builder
	emit(&b, v, 0)
	return strings.TrimSuffix(b.String(), "\n")
}

const alphaNum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func randAlphaNum(n int) (string, error) {
	out := make([]byte, n)
	for i := range out {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphaNum))))
		if err != nil {
			return "", err
		}
		out[i] = alphaNum[j.Int64()]
	}
	return string(out), nil
}

// existing holds the objects lookup can find (-existing).
var existing []map[string]interface{}

func lookup(apiVersion, kind, namespace, name string) map[string]interface{} {
	for _, o := range existing {
		md, _ := o["metadata"].(map[string]interface{})
		if o["apiVersion"] == apiVersion && o["kind"] == kind && md != nil &&
			md["namespace"] == namespace && md["name"] == name {
			return o
		}
	}
	return map[string]interface{}{}
}

func funcs(t **template.Template) template.FuncMap {
	return template.FuncMap{
		"include": func(name string, data interface{}) (string, error) {
			var buf bytes.Buffer
			err := (*t).ExecuteTemplate(&buf, name, data)
			return buf.String(), err
		},
		"toYaml": toYaml,
		"indent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
		},
		"nindent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			return "\n" + pad + strings.ReplaceAll(s, "\n", "\n"+pad)
		},
		"default": func(d interface{}, given ...interface{}) interface{} {
			if len(given) == 0 || empty(given[0]) {
				return d
			}
			return given[0]
		},
		"trunc": func(n int, s string) string {
			if n >= 0 && len(s) > n {
				return s[:n]
			}
			return s
		},
		"trimSuffix": func(suf, s string) string { return strings.TrimSuffix(s, suf) },
		"replace":    func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"contains":   func(sub, s string) bool { return strings.Contains(s, sub) },
		"quote": func(v ...interface{}) string {
			out := make([]string, 0, len(v))
			for _, s := range v {
				if s != nil {
					out = append(out, fmt.Sprintf("%q", fmt.Sprint(s)))
				}
			}
			return strings.Join(out, " ")
		},
		"int": func(v interface{}) int { return int(toInt64(v)) },
		"add": func(a ...interface{}) int64 {
			var s int64
			for _, x := range a {
				s += toInt64(x)
			}
			return s
		},
		"mul": func(a interface{}, b ...interface{}) int64 {
			p := toInt64(a)
			for _, x := range b {
				p *= toInt64(x)
			}
			return p
		},
		"div":          func(a, b interface{}) int64 { return toInt64(a) / toInt64(b) },
		"fail":         func(msg string) (string, error) { return "", errors.New(msg) },
		"randAlphaNum": randAlphaNum,
		"b64enc":       func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
		"lookup":       lookup,
	}
}

func main() {
	chart := flag.String("chart", "", "chart directory")
	valuesPath := flag.String("values", "", "values as JSON")
	release := flag.String("release", "npvdb", "release name")
	namespace := flag.String("namespace", "default", "namespace")
	notes := flag.Bool("notes", false, "render NOTES.txt only")
	existingPath := flag.String("existing", "", "JSON list of objects lookup finds")
	flag.Parse()
	if *existingPath != "" {
		raw, err := os.ReadFile(*existingPath)
		if err == nil {
			err = json.Unmarshal(raw, &existing)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "render:", err)
			os.Exit(1)
		}
	}
	if err := run(*chart, *valuesPath, *release, *namespace, *notes); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func run(chart, valuesPath, release, namespace string, notes bool) error {
	raw, err := os.ReadFile(valuesPath)
	if err != nil {
		return err
	}
	var values map[string]interface{}
	if err := json.Unmarshal(raw, &values); err != nil {
		return fmt.Errorf("%s: %v", valuesPath, err)
	}
	meta, err := readChartMeta(filepath.Join(chart, "Chart.yaml"))
	if err != nil {
		return err
	}
	data := map[string]interface{}{
		"Values": values,
		"Chart":  meta,
		"Release": map[string]interface{}{
			"Name": release, "Namespace": namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
	}
	files, err := filepath.Glob(filepath.Join(chart, "templates", "*"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	var t *template.Template
	t = template.New("chart").Funcs(funcs(&t)).Option("missingkey=error")
	base := filepath.Base(chart)
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if _, err := t.New(base + "/templates/" + filepath.Base(f)).Parse(string(src)); err != nil {
			return err
		}
	}
	for _, f := range files {
		name := filepath.Base(f)
		if strings.HasPrefix(name, "_") || (name == "NOTES.txt") != notes {
			continue
		}
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, base+"/templates/"+name, data); err != nil {
			return err
		}
		if notes {
			fmt.Print(buf.String())
		} else if strings.TrimSpace(buf.String()) != "" {
			fmt.Printf("---\n# Source: %s/templates/%s\n%s\n", base, name, buf.String())
		}
	}
	return nil
}

// readChartMeta takes the top-level "key: value" scalars of Chart.yaml (all the
// templates use: name, version, appVersion), named as helm names them.
func readChartMeta(path string) (map[string]interface{}, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	names := map[string]string{"name": "Name", "version": "Version", "appVersion": "AppVersion"}
	meta := map[string]interface{}{}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, " ") {
			continue
		}
		if n, known := names[k]; known {
			meta[n] = strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	for _, n := range names {
		if _, ok := meta[n]; !ok {
			return nil, fmt.Errorf("%s: no %s", path, n)
		}
	}
	return meta, nil
}
