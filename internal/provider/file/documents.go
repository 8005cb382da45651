package file

import (
	"bytes"
	"regexp"
	"strconv"
)

// document is one YAML document of a file and the line it starts on (1-based).
type document struct {
	data []byte
	line int
}

// empty reports whether the document holds nothing but blanks and comments.
func (d document) empty() bool {
	for _, line := range bytes.Split(d.data, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' {
			return false
		}
	}
	return true
}

// splitDocuments cuts a YAML stream at its "---" separator lines. It is done by hand,
// rather than with a YAML stream decoder, to know the line each document starts on, so
// that errors of the YAML parser (which count from the document's start) can be reported
// against the file. A "..." end-of-document marker line is dropped.
func splitDocuments(data []byte) []document {
	var docs []document
	lines := bytes.SplitAfter(data, []byte("\n"))
	start := 1
	var cur []byte
	for i, line := range lines {
		if isSeparator(line) {
			docs = append(docs, document{data: cur, line: start})
			cur = nil
			start = i + 2
			continue
		}
		if bytes.Equal(bytes.TrimRight(line, " \t\r\n"), []byte("...")) {
			continue
		}
		cur = append(cur, line...)
	}
	return append(docs, document{data: cur, line: start})
}

// isSeparator reports whether line is a document separator: "---" alone or followed by
// blanks or a comment.
func isSeparator(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("---")) {
		return false
	}
	rest := bytes.TrimSpace(line[3:])
	return len(rest) == 0 || rest[0] == '#'
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

// shiftLines adds offset to every "line N" in a YAML parser message, turning lines counted
// from a document's start into lines of the file.
func shiftLines(msg string, offset int) string {
	return yamlLineRE.ReplaceAllStringFunc(msg, func(m string) string {
		n, err := strconv.Atoi(m[len("line "):])
		if err != nil {
			return m
		}
		return "line " + strconv.Itoa(n+offset)
	})
}
