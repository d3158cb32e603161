# run_test.cmake: installs the build tree BUILD_DIR into WORK_DIR/prefix,
# then configures, builds and runs the project SOURCE_DIR (tests/consumer)
# against it, and checks that configuring it against another protobuf
# series fails. Then the same without CMake: compiles and links its main.cc
# with plain `CXX main.cc $(pkg-config --cflags --libs groove-client
# groove-core)`, the installed .pc files found through PKG_CONFIG_PATH,
# runs it, and checks that pkg-config refuses another protobuf series too.
# Only the tiny consumer is built. Run with
#   cmake -DBUILD_DIR=... -DSOURCE_DIR=... -DWORK_DIR=... [-DCXX_FLAGS=...]
#         [-DCXX=c++] -P run_test.cmake
foreach(var BUILD_DIR SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "${var} is not set")
  endif()
endforeach()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}")
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix)
foreach(f include/groove/named_pool.h
          include/groove/client/volume_pool_client.h
          include/groove/v1/volume_pool.grpc.pb.h
          include/groove/v1/volume_pool.proto include/groove/v1/config.proto
          bin/groovectl)
  if(NOT EXISTS ${WORK_DIR}/prefix/${f})
    message(FATAL_ERROR "the install lacks ${f}")
  endif()
endforeach()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build -G Ninja
    -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=RelWithDebInfo
    "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}")
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
execute_process(COMMAND ${WORK_DIR}/build/groove_consumer
  RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(NOT rc EQUAL 0 OR NOT out MATCHES "consumer ok")
  message(FATAL_ERROR "groove_consumer failed (${rc}): ${out}")
endif()
message(STATUS "groove_consumer: ${out}")

# A consumer whose protobuf is of another series (headers saying 4.22.0,
# as FindProtobuf reads them) must fail at configure time, naming the
# version, not later in a generated header.
file(WRITE ${WORK_DIR}/protobuf-4.22/google/protobuf/stubs/common.h
     "#define GOOGLE_PROTOBUF_VERSION 4022000\n")
execute_process(
  COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build-protobuf-4.22
    -G Ninja -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix
    -DProtobuf_INCLUDE_DIR=${WORK_DIR}/protobuf-4.22
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0 OR NOT out MATCHES "unsuitable version \"4\\.22\\.0\"")
  message(FATAL_ERROR
    "find_package(groove) accepted protobuf 4.22.0, or failed otherwise "
    "(${rc}): ${out}")
endif()

# pkg-config: the install's .pc files, one per library, beside each other.
find_program(PKG_CONFIG pkg-config REQUIRED)
if(NOT DEFINED CXX)
  set(CXX c++)
endif()
file(GLOB_RECURSE pc_files ${WORK_DIR}/prefix/*/groove-client.pc)
if(NOT pc_files)
  message(FATAL_ERROR "the install lacks groove-client.pc")
endif()
list(GET pc_files 0 pc_file)
get_filename_component(pc_dir ${pc_file} DIRECTORY)
foreach(name groove-core groove-proto)
  if(NOT EXISTS ${pc_dir}/${name}.pc)
    message(FATAL_ERROR "the install lacks ${name}.pc beside ${pc_file}")
  endif()
endforeach()
set(ENV{PKG_CONFIG_PATH} ${pc_dir})
# pkg_config(VAR ARGS...) sets VAR to pkg-config's output, which must succeed.
function(pkg_config var)
  execute_process(COMMAND ${PKG_CONFIG} ${ARGN} RESULT_VARIABLE rc
    OUTPUT_VARIABLE out ERROR_VARIABLE err OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): pkg-config ${ARGN}: ${err}")
  endif()
  set(${var} "${out}" PARENT_SCOPE)
endfunction()
# The .pc files name the prefix they were installed to (not the build's
# CMAKE_INSTALL_PREFIX), found from their own place.
pkg_config(includedir --variable=includedir groove-core)
file(REAL_PATH ${includedir} includedir)
file(REAL_PATH ${WORK_DIR}/prefix/include expected)
if(NOT includedir STREQUAL expected)
  message(FATAL_ERROR "groove-core.pc's includedir is ${includedir}, "
                      "not the install's ${expected}")
endif()
# groove-core is the data plane's: Abseil only, no gRPC or protobuf.
pkg_config(core_libs --libs groove-core)
if(core_libs MATCHES "-l(grpc|protobuf)")
  message(FATAL_ERROR "pkg-config --libs groove-core links gRPC or "
                      "protobuf: ${core_libs}")
endif()
# Plain c++, the consumer's own warnings as errors; the .pc files bring the
# standard (C++20: GCC 12 defaults to gnu++17) and every library.
pkg_config(flags --cflags --libs groove-client groove-core)
separate_arguments(flags UNIX_COMMAND "${flags}")
separate_arguments(cxx_flags UNIX_COMMAND "${CXX_FLAGS}")
run(${CXX} ${cxx_flags} -Wall -Wextra -Werror
    -o ${WORK_DIR}/pkg_config_consumer ${SOURCE_DIR}/main.cc ${flags})
execute_process(COMMAND ${WORK_DIR}/pkg_config_consumer
  RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(NOT rc EQUAL 0 OR NOT out MATCHES "consumer ok")
  message(FATAL_ERROR "pkg_config_consumer failed (${rc}): ${out}")
endif()
message(STATUS "pkg_config_consumer: ${out}")
# Another protobuf series (a protobuf.pc saying 4.22.0, first on the path)
# is refused, naming it.
file(WRITE ${WORK_DIR}/protobuf-4.22/pkgconfig/protobuf.pc
     "Name: protobuf\nDescription: not this one\nVersion: 4.22.0\n"
     "Libs: -lprotobuf\n")
set(ENV{PKG_CONFIG_PATH} ${WORK_DIR}/protobuf-4.22/pkgconfig:${pc_dir})
execute_process(COMMAND ${PKG_CONFIG} --cflags --libs groove-client
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0 OR NOT out MATCHES "protobuf.*4\\.22\\.0")
  message(FATAL_ERROR
    "pkg-config groove-client accepted protobuf 4.22.0, or failed otherwise "
    "(${rc}): ${out}")
endif()
file(REMOVE_RECURSE ${WORK_DIR})
