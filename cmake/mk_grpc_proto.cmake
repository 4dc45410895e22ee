# mk_grpc_proto_library(NAME <target> ROOT <proto root> FILES <.proto files relative to ROOT>)
# Generates C++ messages and gRPC stubs into the build tree and wraps them in a library.
function(mk_grpc_proto_library)
  cmake_parse_arguments(P "" "NAME;ROOT" "FILES" ${ARGN})
  find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/${P_NAME}_gen)
  file(MAKE_DIRECTORY ${out_dir})
  set(srcs)
  foreach(rel ${P_FILES})
    string(REGEX REPLACE "\\.proto$" "" stem ${rel})
    set(outs ${out_dir}/${stem}.pb.cc ${out_dir}/${stem}.pb.h
             ${out_dir}/${stem}.grpc.pb.cc ${out_dir}/${stem}.grpc.pb.h)
    add_custom_command(
      OUTPUT ${outs}
      COMMAND ${Protobuf_PROTOC_EXECUTABLE} --proto_path=${P_ROOT} --cpp_out=${out_dir}
              --grpc_out=${out_dir} --plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN} ${rel}
      DEPENDS ${P_ROOT}/${rel}
      WORKING_DIRECTORY ${P_ROOT}
      COMMENT "protoc ${rel}")
    list(APPEND srcs ${outs})
  endforeach()
  add_library(${P_NAME} ${srcs})
  target_include_directories(${P_NAME} PUBLIC ${out_dir})
  target_link_libraries(${P_NAME} PUBLIC protobuf::libprotobuf gRPC::grpc++)
endfunction()
