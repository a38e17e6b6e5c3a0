// generic.cpp: the baseline variant of matmul_int8.cpp (compiled without -mavx2), the reference of the check.
#define NT_ISA generic
#include "../../csrc/kernels/matmul_int8.cpp"
