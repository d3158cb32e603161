# build_info/generate.cmake: writes build_values.cc, the values of
# groove/build_info.h, from build_values.cc.in. Run at every build by the
# target groove_build_values (build_info/CMakeLists.txt says why), as
#   cmake -DSOURCE_DIR=... -DGIT_EXECUTABLE=... -DTEMPLATE=... -DOUTPUT=...
#         -DGROOVE_VERSION=... -DGROOVE_REVISION=... -DGROOVE_BUILD_TYPE=...
#         -DGROOVE_GRPC_VERSION=... -DGROOVE_PROTOBUF_VERSION=...
#         -DGROOVE_ABSEIL_VERSION=... -P generate.cmake
#
# The revision, unless GROOVE_REVISION names it: `git rev-parse --short
# HEAD` of SOURCE_DIR, with "-dirty" when a tracked file differs from HEAD
# (`git status --porcelain --untracked-files=no` says anything: staged or
# not; untracked files are not part of the build, as for git describe
# --dirty), or "unknown" when there is no git, or SOURCE_DIR is not the top
# of a git work tree (a tarball unpacked inside another repository must not
# report that repository's HEAD), or git refuses it (a repository owned by
# another user). GIT_OPTIONAL_LOCKS=0: the build never writes the index,
# which git status would otherwise refresh, racing a git command the
# developer runs at the same time.
#
# The file is written through configure_file, which leaves it untouched
# when its text is the same: only a changed value recompiles it.

set(ENV{GIT_OPTIONAL_LOCKS} 0)

# git_out(VAR ARGS...): VAR is git's stripped stdout, or "" when it failed.
function(git_out var)
  execute_process(
    COMMAND ${GIT_EXECUTABLE} -C ${SOURCE_DIR} ${ARGN}
    RESULT_VARIABLE result
    OUTPUT_VARIABLE out
    ERROR_QUIET
    OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT result EQUAL 0)
    set(out "")
  endif()
  set(${var} "${out}" PARENT_SCOPE)
endfunction()

set(revision "${GROOVE_REVISION}")
if(revision STREQUAL "")
  set(revision "unknown")
  if(GIT_EXECUTABLE)
    git_out(top rev-parse --show-toplevel)
    if(NOT top STREQUAL "")
      file(REAL_PATH "${top}" top)
      file(REAL_PATH "${SOURCE_DIR}" source)
      if(top STREQUAL source)
        git_out(hash rev-parse --short HEAD)
        if(NOT hash STREQUAL "")
          set(revision "${hash}")
          git_out(changes status --porcelain --untracked-files=no)
          if(NOT changes STREQUAL "")
            string(APPEND revision "-dirty")
          endif()
        endif()
      endif()
    endif()
  endif()
endif()
if(GROOVE_BUILD_TYPE STREQUAL "")
  set(GROOVE_BUILD_TYPE "none")  # CMAKE_BUILD_TYPE unset: no preset's
endif()
set(GROOVE_BUILD_REVISION "${revision}")

# Every value becomes a C string literal, a Prometheus label value and a
# logfmt value: refuse anything but the characters versions are made of.
foreach(var GROOVE_VERSION GROOVE_BUILD_REVISION GROOVE_BUILD_TYPE
            GROOVE_GRPC_VERSION GROOVE_PROTOBUF_VERSION GROOVE_ABSEIL_VERSION)
  if(NOT "${${var}}" MATCHES "^[A-Za-z0-9._+-]+$")
    message(FATAL_ERROR "build_info: ${var} is '${${var}}': want one or more "
                        "of A-Z a-z 0-9 . _ + - (e.g. -DGROOVE_REVISION=3561dfd)")
  endif()
endforeach()

configure_file("${TEMPLATE}" "${OUTPUT}" @ONLY)
