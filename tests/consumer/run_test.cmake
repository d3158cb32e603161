# run_test.cmake: installs the build tree BUILD_DIR into WORK_DIR/prefix,
# then configures, builds and runs the project SOURCE_DIR (tests/consumer)
# against it, and checks that configuring it against another protobuf
# series fails. Only the tiny consumer is built. Run with
#   cmake -DBUILD_DIR=... -DSOURCE_DIR=... -DWORK_DIR=... [-DCXX_FLAGS=...]
#         -P run_test.cmake
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
file(REMOVE_RECURSE ${WORK_DIR})
