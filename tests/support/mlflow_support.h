#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace petal::test {

// The URL of the MLflow server started by the CTest fixture (tests/CMakeLists.txt: mlflow_server).
std::string mlflow_url();

// Runs `script` with the project's Python (.venv) and MLFLOW_TRACKING_URI set to the test server;
// the script must print one JSON document, which is returned. Used to read results back with
// MLflow's own client.
nlohmann::json python_json(const std::string& script);
// The same against the server at `tracking_uri`.
nlohmann::json python_json(const std::string& script, const std::string& tracking_uri);

// A name no other test uses, e.g. for experiments.
std::string unique_name(const std::string& prefix);

}  // namespace petal::test
