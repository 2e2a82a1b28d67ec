// lincheck: checks that a history of appends and strong reads recorded against Sidelog sidecars
// is linearizable per entity, with Porcupine (github.com/anishathalye/porcupine).
//
// Input (stdin): one JSON object per line, one per operation:
//
//	{"client":0,"entity":"e1","kind":"append","expected":3,"call":120,"return":450,"result":"ok","version":4}
//	{"client":1,"entity":"e1","kind":"read","call":130,"return":200,"result":"ok","version":3}
//
// expected -1 is "any"; a read's version 0 means the entity does not exist yet. result is ok,
// conflict (409: the expected version was not the current one) or unknown (503 with
// outcomeUnknown: the append may or may not have been stored; its return is infinite). Calls a
// client knows did nothing (refused before storing) are left out of the history.
//
// The model of one entity is its version. Exit 0 when every entity's history is linearizable;
// 1 with the history as it stood when it first became non-linearizable (the operation that
// returned then is marked); 2 on bad input; 3 when the check timed out.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

type record struct {
	Client   int    `json:"client"`
	Entity   string `json:"entity"`
	Kind     string `json:"kind"`
	Expected int64  `json:"expected"`
	Call     int64  `json:"call"`
	Return   int64  `json:"return"`
	Result   string `json:"result"`
	Version  int64  `json:"version"`
}

func step(state, input, output interface{}) (bool, interface{}) {
	v := state.(int64)
	in := input.(record)
	switch in.Kind {
	case "read":
		return in.Version == v, v
	case "append":
		fits := in.Expected < 0 || in.Expected == v
		switch in.Result {
		case "ok":
			return fits && in.Version == v+1, v + 1
		case "conflict":
			return !fits, v
		case "unknown": // stored when it fits, else refused: either way legal
			if fits {
				return true, v + 1
			}
			return true, v
		}
	}
	return false, v
}

func describe(input, output interface{}) string {
	in := input.(record)
	if in.Kind == "read" {
		return fmt.Sprintf("read -> v%d", in.Version)
	}
	exp := "any"
	if in.Expected >= 0 {
		exp = fmt.Sprint(in.Expected)
	}
	if in.Result == "ok" {
		return fmt.Sprintf("append(expected %s) -> v%d", exp, in.Version)
	}
	return fmt.Sprintf("append(expected %s) -> %s", exp, in.Result)
}

var model = porcupine.Model{
	Init:              func() interface{} { return int64(0) },
	Step:              step,
	Equal:             func(a, b interface{}) bool { return a.(int64) == b.(int64) },
	DescribeOperation: describe,
}

func operations(records []record) []porcupine.Operation {
	ops := make([]porcupine.Operation, 0, len(records))
	for _, r := range records {
		ret := r.Return
		if r.Result == "unknown" {
			ret = math.MaxInt64
		}
		ops = append(ops, porcupine.Operation{ClientId: r.Client, Input: r, Call: r.Call, Output: r, Return: ret})
	}
	return ops
}

func check(records []record, timeout time.Duration) porcupine.CheckResult {
	return porcupine.CheckOperationsTimeout(model, operations(records), timeout)
}

// shortestBadPrefix returns the history as it stood at the earliest instant T at which it was
// already not linearizable: the operations called by T, where those still running at T count
// as not answered yet (a read is left out, an append's outcome is unknown). The operation that
// returned at T is the first one that fits no order.
func shortestBadPrefix(records []record, timeout time.Duration) ([]record, int64) {
	returns := make([]int64, 0, len(records))
	for _, r := range records {
		if r.Result != "unknown" {
			returns = append(returns, r.Return)
		}
	}
	sort.Slice(returns, func(i, j int) bool { return returns[i] < returns[j] })
	lo, hi := 0, len(returns)-1 // the history at returns[hi] is illegal (it is the whole one)
	for lo < hi {
		mid := (lo + hi) / 2
		if check(at(records, returns[mid]), timeout) == porcupine.Illegal {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return at(records, returns[hi]), returns[hi]
}

// at is the history as known at instant t.
func at(records []record, t int64) []record {
	var out []record
	for _, r := range records {
		if r.Call > t {
			continue
		}
		if r.Return > t {
			if r.Kind == "read" {
				continue
			}
			r.Result = "unknown"
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Call < out[j].Call })
	return out
}

func main() {
	timeout := 60 * time.Second
	byEntity := map[string][]record{}
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for scanner.Scan() {
		line := scanner.Bytes()
		if len(line) == 0 {
			continue
		}
		var r record
		if err := json.Unmarshal(line, &r); err != nil || r.Entity == "" || (r.Kind != "read" && r.Kind != "append") {
			fmt.Fprintf(os.Stderr, "lincheck: line %d is not an operation: %s\n", n+1, line)
			os.Exit(2)
		}
		byEntity[r.Entity] = append(byEntity[r.Entity], r)
		n++
	}
	entities := make([]string, 0, len(byEntity))
	for e := range byEntity {
		entities = append(entities, e)
	}
	sort.Strings(entities)
	for _, e := range entities {
		switch check(byEntity[e], timeout) {
		case porcupine.Ok:
			continue
		case porcupine.Unknown:
			fmt.Printf("lincheck: entity %s: the check timed out after %s (%d operations)\n", e, timeout, len(byEntity[e]))
			os.Exit(3)
		}
		bad, t := shortestBadPrefix(byEntity[e], timeout)
		const shown = 40
		fmt.Printf("lincheck: entity %s is not linearizable: already at %d µs, when the operation marked <- returned (%d of its %d operations were called by then; the last %d shown, times in µs):\n",
			e, t, len(bad), len(byEntity[e]), min(shown, len(bad)))
		for _, r := range bad[max(0, len(bad)-shown):] {
			ret, mark := fmt.Sprint(r.Return), ""
			if r.Result == "unknown" {
				ret = "?"
			}
			if r.Return == t {
				mark = "   <-"
			}
			fmt.Printf("  client %d [%d, %s] %s%s\n", r.Client, r.Call, ret, describe(r, r), mark)
		}
		os.Exit(1)
	}
	fmt.Printf("lincheck: %d operations on %d entities: linearizable\n", n, len(entities))
}
