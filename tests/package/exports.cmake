# package.exports: libmqpool exports C++ names only (namespace mqpool, mangled _Z...).
# An unmangled name (an extern "C" function, even in an anonymous namespace) is global:
# a program or another library with a function of that name takes its place, as the
# mqpool command's own on_stop_signal once took the broker's and SIGTERM no longer
# stopped `mqpool broker`. Run with -DLIB=path/to/libmqpool.so -DNM=nm.
execute_process(COMMAND ${NM} -D --defined-only ${LIB}
  OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} -D ${LIB} failed (${rc})")
endif()
string(REPLACE "\n" ";" lines "${symbols}")
set(unmangled)
foreach(line IN LISTS lines)
  if(line MATCHES "^[0-9a-f]+ [A-Za-z] (.+)$")
    set(name "${CMAKE_MATCH_1}")
    # __odr_asan_gen_*: AddressSanitizer's ODR indicators, one per global (make sanitize).
    if(NOT name MATCHES "^_Z" AND NOT name MATCHES "^(_init|_fini|_edata|_end|__bss_start)$"
       AND NOT name MATCHES "^__odr_asan_gen_")
      list(APPEND unmangled "${name}")
    endif()
  endif()
endforeach()
if(unmangled)
  message(FATAL_ERROR "libmqpool exports names with C linkage: ${unmangled}")
endif()
message(STATUS "libmqpool exports C++ names only")
