// RUN: moe-opt %s -moe-expand=row-tile=0 -verify-diagnostics

// expected-error @+1 {{moe-expand: 'row-tile' (0) must be positive}}
module {
}
