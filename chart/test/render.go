// A stand-in for `helm template` where no helm binary can be installed: renders the chart's
// templates with Go's text/template (the engine Helm uses) and the few Helm and sprig
// functions the chart calls (include, toYaml, nindent, indent, quote, trunc, trimSuffix, until,
// int, list, default), from values given as JSON. Output: the manifests, separated by `---`,
// each preceded by `# Source: <template>`. Only Go's standard library is used.
//
//	go run render.go <chart dir> <values.json> <release name> <namespace>
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: render <chart dir> <values.json> <release> <namespace>")
		os.Exit(2)
	}
	dir, valuesFile, release, namespace := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	raw, err := os.ReadFile(valuesFile)
	check(err)
	// Numbers as written (8589934592, not 8.589934592e+09), as Helm's YAML reader gives them.
	var values map[string]interface{}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	check(dec.Decode(&values))
	data := map[string]interface{}{
		"Values":  values,
		"Release": map[string]interface{}{"Name": release, "Namespace": namespace, "Service": "Helm"},
		"Chart":   map[string]interface{}{"Name": "etcdbr"},
	}
	root := template.New("chart").Option("missingkey=error")
	funcs := template.FuncMap{
		"include": func(name string, data interface{}) (string, error) {
			var b bytes.Buffer
			err := root.ExecuteTemplate(&b, name, data)
			return b.String(), err
		},
		"toYaml": func(v interface{}) (string, error) {
			// JSON is YAML (flow style).
			b, err := json.Marshal(v)
			return string(b), err
		},
		"nindent": func(n int, s string) string { return "\n" + indent(n, s) },
		"indent":  indent,
		"quote": func(v interface{}) string {
			b, _ := json.Marshal(fmt.Sprint(v))
			return string(b)
		},
		"trunc": func(n int, s string) string {
			if len(s) > n {
				return s[:n]
			}
			return s
		},
		"trimSuffix": func(suffix, s string) string { return strings.TrimSuffix(s, suffix) },
		"until": func(n int) []int {
			out := make([]int, n)
			for i := range out {
				out[i] = i
			}
			return out
		},
		"int": func(v interface{}) int {
			switch x := v.(type) {
			case json.Number:
				n, err := x.Int64()
				check(err)
				return int(n)
			case int:
				return x
			}
			panic(fmt.Sprintf("int of %T", v))
		},
		"list": func(v ...interface{}) []interface{} { return v },
		"default": func(d, v interface{}) interface{} {
			if v == nil || v == "" || v == false {
				return d
			}
			return v
		},
	}
	root.Funcs(funcs)
	files, err := filepath.Glob(filepath.Join(dir, "templates", "*"))
	check(err)
	sort.Strings(files)
	for _, f := range files {
		text, err := os.ReadFile(f)
		check(err)
		_, err = root.New(filepath.Base(f)).Parse(string(text))
		check(err)
	}
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasPrefix(base, "_") {
			continue
		}
		var b bytes.Buffer
		check(root.ExecuteTemplate(&b, base, data))
		fmt.Printf("---\n# Source: %s\n%s\n", filepath.Join("templates", base), strings.TrimSpace(b.String()))
	}
}

func indent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}
