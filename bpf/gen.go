package bpf

// The C sources under c/ are compiled for x86-64 only (-target amd64): the
// generated capture_x86_bpfel.{go,o} and tier_x86_bpfel.{go,o} are committed
// so that building Weir needs no clang. Regenerate with `make generate`.
//
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target amd64 -type conn_event -type data_event -type process_event -type retransmit_event -type proc_info -type event_type -type conn_role -type direction -type syscall_id -type drop_reason -type metric_bit -type send_metrics -type recv_metrics -type sock_stats -type drop_slot -type dev_key -type dev_counters -type pod_drop_key -type skip_reason -type h1_hint capture c/capture.bpf.c -- -I./include
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target amd64 tier c/tier.bpf.c -- -I./include
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target amd64 tls c/tls.bpf.c -- -I./include
