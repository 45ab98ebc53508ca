# cmake -P script behind the package.find_package test; see CMakeLists.txt beside it.
# Inputs: BUILD_DIR, WORK_DIR, OUTSIDE_DIR, GENERATOR, CXX_COMPILER, CXX_FLAGS, CONFIG.
function(step)
  list(JOIN ARGN " " cmdline)
  message(STATUS "package test: ${cmdline}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "package test: failed (${rc}): ${cmdline}")
  endif()
endfunction()

set(prefix ${WORK_DIR}/prefix)
set(config_args)
if(CONFIG)
  set(config_args --config ${CONFIG})
endif()
set(outside_build ${WORK_DIR}/outside-build)
file(REMOVE_RECURSE ${WORK_DIR})

step(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix} ${config_args})
step(${CMAKE_COMMAND} -S ${OUTSIDE_DIR} -B ${outside_build} -G "${GENERATOR}"
     -D CMAKE_CXX_COMPILER=${CXX_COMPILER}
     "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
     -D CMAKE_BUILD_TYPE=${CONFIG}
     -D CMAKE_PREFIX_PATH=${prefix}
     -D CMAKE_FIND_PACKAGE_PREFER_CONFIG=ON)
step(${CMAKE_COMMAND} --build ${outside_build} ${config_args} --parallel 2)
step(${outside_build}/outside)
