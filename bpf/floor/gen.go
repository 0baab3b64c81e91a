package floor

// Built for x86-64 only, like the capture objects; the output is committed.
//
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target amd64 -type floor_record floor ../c/floor.bpf.c -- -I../include
