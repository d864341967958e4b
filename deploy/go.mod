module github.com/joblet-dev/joblet/deploy

go 1.26.0

require (
	github.com/joblet-dev/joblet/proto v0.0.0
	go.yaml.in/yaml/v3 v3.0.6
)

replace github.com/joblet-dev/joblet/proto => ../proto
