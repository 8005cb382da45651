// Command report turns bench/run's per-round measurements into the results table
// (markdown), the JSON document and the PNG chart.
//
// Input (-in): one line per scenario and round, tab-separated: scenario, round, then
// key=value fields (rps, p50_ms, p99_ms, cpu_ms_per_kreq, rss_mb, errors, and
// scenario-specific ones). Each key's median over the rounds is reported.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

type scenario struct {
	name    string
	rounds  int
	vals    map[string][]float64
	byRound map[string]map[string]float64 // key → round → value
}

func (s *scenario) med(k string) (float64, bool) {
	v := slices.Clone(s.vals[k])
	if len(v) == 0 {
		return 0, false
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2], true
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2, true
}

func (s *scenario) spread(k string) string {
	v := s.vals[k]
	if len(v) < 2 {
		return ""
	}
	return fmt.Sprintf("%s–%s", num(slices.Min(v)), num(slices.Max(v)))
}

func read(r io.Reader) ([]*scenario, error) {
	var order []*scenario
	by := map[string]*scenario{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Split(strings.TrimSpace(sc.Text()), "\t")
		if len(f) < 2 || f[0] == "" {
			continue
		}
		s := by[f[0]]
		if s == nil {
			s = &scenario{name: f[0], vals: map[string][]float64{}, byRound: map[string]map[string]float64{}}
			by[f[0]] = s
			order = append(order, s)
		}
		s.rounds++
		for _, kv := range f[2:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			x, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
				continue
			}
			s.vals[k] = append(s.vals[k], x)
			if s.byRound[k] == nil {
				s.byRound[k] = map[string]float64{}
			}
			s.byRound[k][f[1]] = x
		}
	}
	return order, sc.Err()
}

// num formats a figure with about three significant digits.
func num(x float64) string {
	switch a := math.Abs(x); {
	case a >= 10000:
		return fmt.Sprintf("%.1fk", x/1000)
	case a >= 100:
		return fmt.Sprintf("%.0f", x)
	case a >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}

func cell(s *scenario, k string) string {
	if v, ok := s.med(k); ok {
		return num(v)
	}
	return "–"
}

// pairedRatio is the median over rounds of s's value divided by ref's in the same round
// (rounds alternate, so each pair saw the same machine state), falling back to the ratio
// of the medians when the two share no round.
func pairedRatio(s, ref *scenario, k string) (float64, bool) {
	if ref == nil || s == ref {
		return 0, false
	}
	var rs []float64
	for round, a := range s.byRound[k] {
		if b, ok := ref.byRound[k][round]; ok && b != 0 {
			rs = append(rs, a/b)
		}
	}
	if len(rs) > 0 {
		return (&scenario{vals: map[string][]float64{"r": rs}}).med("r")
	}
	a, ok1 := s.med(k)
	b, ok2 := ref.med(k)
	if !ok1 || !ok2 || b == 0 {
		return 0, false
	}
	return a / b, true
}

func ratio(s, ref *scenario, k string) string {
	if r, ok := pairedRatio(s, ref, k); ok {
		return fmt.Sprintf("%.2f", r)
	}
	return "–"
}

type jsonScenario struct {
	Name         string             `json:"name"`
	RPS          *float64           `json:"rps"`
	P50          *float64           `json:"p50_ms"`
	P99          *float64           `json:"p99_ms"`
	CPU          *float64           `json:"cpu_ms_per_kreq"`
	RSS          *float64           `json:"rss_mb"`
	Rounds       int                `json:"rounds"`
	Extra        map[string]float64 `json:"extra,omitempty"`
	RatioToNginx map[string]float64 `json:"ratio_to_nginx,omitempty"`
}

var core = []string{"rps", "p50_ms", "p99_ms", "cpu_ms_per_kreq", "rss_mb"}

func toJSON(ss []*scenario, ref *scenario) []jsonScenario {
	var out []jsonScenario
	for _, s := range ss {
		j := jsonScenario{Name: s.name, Rounds: s.rounds}
		ptrs := []**float64{&j.RPS, &j.P50, &j.P99, &j.CPU, &j.RSS}
		for i, k := range core {
			if v, ok := s.med(k); ok {
				*ptrs[i] = &v
				if r, ok := pairedRatio(s, ref, k); ok {
					if j.RatioToNginx == nil {
						j.RatioToNginx = map[string]float64{}
					}
					j.RatioToNginx[k] = math.Round(r*1000) / 1000
				}
			}
		}
		for k := range s.vals {
			if !slices.Contains(core, k) {
				if v, ok := s.med(k); ok {
					if j.Extra == nil {
						j.Extra = map[string]float64{}
					}
					j.Extra[k] = v
				}
			}
		}
		out = append(out, j)
	}
	return out
}

// pairedOverFloor is the median over rounds of (ep − base) / floor for key k, each term
// taken in the same round; ok is false when no round has all three.
func pairedOverFloor(ep, base, floor *scenario, k string) (added, fl, r float64, ok bool) {
	var rs, adds, fls []float64
	for round, a := range ep.byRound[k] {
		b, ok1 := base.byRound[k][round]
		f, ok2 := floor.byRound[k][round]
		if ok1 && ok2 && f > 0 {
			rs = append(rs, (a-b)/f)
			adds = append(adds, a-b)
			fls = append(fls, f)
		}
	}
	if len(rs) == 0 {
		return 0, 0, 0, false
	}
	m := &scenario{vals: map[string][]float64{"r": rs, "a": adds, "f": fls}}
	r, _ = m.med("r")
	added, _ = m.med("a")
	fl, _ = m.med("f")
	return added, fl, r, true
}

// targets evaluates the targets on what this run measured.
func targets(by map[string]*scenario) []string {
	var out []string
	verdict := func(ok bool) string {
		if ok {
			return "**met**"
		}
		return "**not met**"
	}
	ngx, slu := by["nginx"], by["sluice"]
	if ngx != nil && slu != nil {
		if r, ok := pairedRatio(slu, ngx, "rps"); ok {
			out = append(out, fmt.Sprintf("`sluice` req/s ≥ 0.9 × nginx: %.2f × — %s", r, verdict(r >= 0.9)))
		}
		if r, ok := pairedRatio(slu, ngx, "p99_ms"); ok {
			out = append(out, fmt.Sprintf("`sluice` p99 ≤ 1.5 × nginx: %.2f × — %s", r, verdict(r <= 1.5)))
		}
		if r, ok := pairedRatio(slu, ngx, "cpu_ms_per_kreq"); ok {
			a, _ := slu.med("cpu_ms_per_kreq")
			b, _ := ngx.med("cpu_ms_per_kreq")
			out = append(out, fmt.Sprintf("`sluice` CPU per request ≤ 1.3 × nginx: %.2f × (medians %.1f µs vs %.1f µs) — %s", r, a, b, verdict(r <= 1.3)))
		}
	}
	ep, fl := by["sluice-extproc-headers"], by["grpc-floor"]
	if slu != nil && ep != nil && fl != nil {
		if a, f, r, ok := pairedOverFloor(ep, slu, fl, "cpu_ms_per_kreq"); ok {
			out = append(out, fmt.Sprintf("ext_proc headers adds ≤ 1.25 × the floor's CPU per stream: adds %.1f µs, floor %.1f µs (medians): %.2f × (median per round) — %s",
				a, f, r, verdict(r <= 1.25)))
		}
		if a, f, r, ok := pairedOverFloor(ep, slu, fl, "p50_ms"); ok {
			out = append(out, fmt.Sprintf("ext_proc headers p50 added latency ≤ 2 × the floor's p50: adds %.3f ms, floor %.3f ms (medians): %.2f × (median per round) — %s",
				a, f, r, verdict(r <= 2)))
		}
	}
	if lg := by["sluice-large"]; lg != nil {
		if r, ok := lg.med("rss_mb"); ok {
			out = append(out, fmt.Sprintf("`sluice-large` peak RSS < 64 MiB for 1 GiB each way: %.1f MiB — %s", r, verdict(r < 64)))
		}
	}
	if ic := by["sluice-idle-conns"]; ic != nil {
		if k, ok := ic.med("kib_per_conn"); ok {
			out = append(out, fmt.Sprintf("`sluice-idle-conns` < 20 KiB per idle connection: %.1f KiB — %s", k, verdict(k < 20)))
		}
	}
	return out
}

// chartCap is the highest ratio drawn to scale; taller bars are cut there and labelled.
const chartCap = 8.0

func chart(ss []*scenario, ref *scenario, path string) error {
	if ref == nil {
		return fmt.Errorf("no nginx scenario to normalise to")
	}
	var names []string
	var rps, cpu []float64
	for _, s := range ss {
		if _, ok := s.med("rps"); !ok {
			continue
		}
		r, ok := pairedRatio(s, ref, "rps")
		if s == ref {
			r, ok = 1, true
		}
		if !ok {
			continue
		}
		names = append(names, s.name)
		rps = append(rps, r)
		c, ok := pairedRatio(s, ref, "cpu_ms_per_kreq")
		if s == ref {
			c, ok = 1, true
		}
		if !ok {
			c = 0
		}
		cpu = append(cpu, c)
	}
	p := plot.New()
	p.Title.Text = "One core per proxy, ratio to nginx in the same run (req/s: higher is better; CPU per request: lower is better)"
	p.Y.Label.Text = "ratio to nginx"
	top := 0.0
	for _, v := range append(slices.Clone(rps), cpu...) {
		top = math.Max(top, math.Min(v, chartCap))
	}
	p.Y.Min, p.Y.Max = 0, top*1.3
	w := vg.Points(16)
	p.Add(plotter.NewGrid())
	for i, series := range []struct {
		vals   []float64
		col    color.Color
		legend string
	}{
		{rps, color.RGBA{R: 60, G: 110, B: 180, A: 255}, "req/s (streams/s for grpc-floor)"},
		{cpu, color.RGBA{R: 220, G: 120, B: 40, A: 255}, "CPU per request (per stream for grpc-floor)"},
	} {
		clipped := make(plotter.Values, len(series.vals))
		var xys plotter.XYs
		var labels []string
		for j, v := range series.vals {
			clipped[j] = math.Min(v, chartCap)
			if v > 0 {
				xys = append(xys, plotter.XY{X: float64(j) + float64(2*i-1)*0.18, Y: clipped[j]})
				labels = append(labels, fmt.Sprintf("%.2f", v))
			}
		}
		bc, err := plotter.NewBarChart(clipped, w)
		if err != nil {
			return err
		}
		bc.Color = series.col
		bc.LineStyle.Width = 0
		bc.Offset = vg.Length(2*i-1) * w / 2
		p.Add(bc)
		p.Legend.Add(series.legend, bc)
		if len(xys) > 0 {
			l, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
			if err != nil {
				return err
			}
			for k := range l.TextStyle {
				l.TextStyle[k].XAlign = -0.5
				l.TextStyle[k].YAlign = 0
				l.TextStyle[k].Font.Size = vg.Points(7)
			}
			p.Add(l)
		}
	}
	one := plotter.NewFunction(func(float64) float64 { return 1 })
	one.Color = color.Gray{Y: 80}
	one.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(one)
	p.Legend.Top = true
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = 0.5
	p.X.Tick.Label.XAlign = -0.9
	p.X.Tick.Label.YAlign = -0.5
	return p.Save(vg.Length(70+24*len(names))*vg.Millimeter, 130*vg.Millimeter, path)
}

func main() {
	in := flag.String("in", "", "per-round measurements (TSV)")
	md := flag.String("md", "", "markdown output file (also printed to stdout)")
	js := flag.String("json", "", "JSON output file")
	png := flag.String("png", "", "PNG chart output file")
	header := flag.String("header", "", "markdown written before the table")
	flag.Parse()
	f, err := os.Open(*in)
	if err != nil {
		fail(err)
	}
	ss, err := read(f)
	f.Close()
	if err != nil {
		fail(err)
	}
	by := map[string]*scenario{}
	for _, s := range ss {
		by[s.name] = s
	}
	ref := by["nginx"]

	var b strings.Builder
	if *header != "" {
		b.WriteString(*header)
		b.WriteString("\n\n")
	}
	b.WriteString("Ratios (× nginx) are medians of per-round ratios to nginx in the same round.\n\n")
	b.WriteString("| scenario | req/s | × nginx | p50 ms | p99 ms | p99 × nginx | CPU ms / 1k req | CPU × nginx | peak RSS MiB | req/s range | notes |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range ss {
		var notes []string
		if e, ok := s.med("errors"); ok && e > 0 {
			notes = append(notes, fmt.Sprintf("%.0f errors/non-2xx per round", e))
		}
		if v, ok := s.med("proc_cpu_ms_per_kreq"); ok {
			notes = append(notes, fmt.Sprintf("processor CPU %s ms/1k", num(v)))
		}
		if v, ok := s.med("mib_s"); ok {
			notes = append(notes, fmt.Sprintf("request bodies %s MiB/s", num(v)))
		}
		if v, ok := s.med("rss_before_mb"); ok {
			notes = append(notes, fmt.Sprintf("RSS %s MiB before", num(v)))
		}
		if v, ok := s.med("down_mib_s"); ok {
			notes = append(notes, fmt.Sprintf("1 GiB download %s MiB/s", num(v)))
		}
		if v, ok := s.med("up_mib_s"); ok {
			notes = append(notes, fmt.Sprintf("1 GiB upload %s MiB/s", num(v)))
		}
		if v, ok := s.med("kib_per_conn"); ok {
			c, _ := s.med("conns")
			notes = append(notes, fmt.Sprintf("%s KiB per idle connection (%.0f connections)", num(v), c))
		}
		if s.name == "grpc-floor" {
			notes = append(notes, "streams/s; CPU per 1k streams of the client")
		}
		if s.name == "direct" {
			notes = append(notes, "no proxy: the ceiling")
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", s.name,
			cell(s, "rps"), ratio(s, ref, "rps"), cell(s, "p50_ms"), cell(s, "p99_ms"), ratio(s, ref, "p99_ms"),
			cell(s, "cpu_ms_per_kreq"), ratio(s, ref, "cpu_ms_per_kreq"), cell(s, "rss_mb"), s.spread("rps"),
			strings.Join(notes, "; "))
	}
	if t := targets(by); len(t) > 0 {
		b.WriteString("\nTargets (issue 5), on this run:\n\n")
		for _, l := range t {
			b.WriteString("- " + l + "\n")
		}
	}
	fmt.Print(b.String())
	if *md != "" {
		if err := os.WriteFile(*md, []byte(b.String()), 0o644); err != nil {
			fail(err)
		}
	}
	if *js != "" {
		doc := struct {
			Scenarios []jsonScenario `json:"scenarios"`
		}{toJSON(ss, ref)}
		out, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			fail(err)
		}
		if err := os.WriteFile(*js, append(out, '\n'), 0o644); err != nil {
			fail(err)
		}
	}
	if *png != "" {
		if err := chart(ss, ref, *png); err != nil {
			fmt.Fprintln(os.Stderr, "report: chart:", err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "report:", err)
	os.Exit(1)
}
